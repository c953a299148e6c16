import { describe, expect, it } from 'vitest';
import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { ana, fakeToken, mockApi, productsHandler, renderAt } from '../test/helpers';
import { AUTH_KEY } from '../state/auth';

describe('login', () => {
  it('says "Invalid email or password" on 401 and keeps the form', async () => {
    mockApi({ 'POST /auth/login': { status: 401, body: { error: 'Invalid credentials', request_id: 'q1' } } });
    renderAt('/login');
    await userEvent.type(screen.getByLabelText(/Email/), 'ana@example.com');
    await userEvent.type(screen.getByLabelText(/Password/), 'wrong password');
    await userEvent.click(screen.getByRole('button', { name: 'Log in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Invalid email or password.');
    expect(screen.getByLabelText(/Email/)).toHaveValue('ana@example.com');
    expect(localStorage.getItem(AUTH_KEY)).toBeNull();
  });

  it('signs in, stores the token and returns to the page that asked', async () => {
    const token = fakeToken();
    const { calls } = mockApi({
      'POST /auth/login': { body: { user: ana, token } },
      'GET /orders': { body: [] },
    });
    renderAt('/orders');
    await waitFor(() => expect(window.location.pathname).toBe('/login'));
    expect(new URLSearchParams(window.location.search).get('next')).toBe('/orders');
    await userEvent.type(screen.getByLabelText(/Email/), 'ana@example.com');
    await userEvent.type(screen.getByLabelText(/Password/), 'correct horse');
    await userEvent.click(screen.getByRole('button', { name: 'Log in' }));
    expect(await screen.findByRole('heading', { level: 1, name: 'My orders' })).toBeInTheDocument();
    expect(calls.find((c) => c.path === '/auth/login')!.body).toEqual({ email: 'ana@example.com', password: 'correct horse' });
    expect(JSON.parse(localStorage.getItem(AUTH_KEY)!).token).toBe(token);
    expect(screen.getByText('Hi, Ana')).toBeInTheDocument();
  });

  it('validates empty fields without calling the API and focuses the first', async () => {
    const { calls } = mockApi({});
    renderAt('/login');
    await userEvent.click(screen.getByRole('button', { name: 'Log in' }));
    expect(screen.getByLabelText(/Email/)).toHaveFocus();
    expect(screen.getByLabelText(/Email/)).toHaveAccessibleDescription('Enter your email address.');
    expect(calls).toHaveLength(0);
  });

  it('refuses to follow an off-site next', async () => {
    mockApi({ 'POST /auth/login': { body: { user: ana, token: fakeToken() } }, 'GET /products': productsHandler() });
    renderAt('/login?next=//evil.example/x');
    await userEvent.type(screen.getByLabelText(/Email/), 'ana@example.com');
    await userEvent.type(screen.getByLabelText(/Password/), 'correct horse');
    await userEvent.click(screen.getByRole('button', { name: 'Log in' }));
    await waitFor(() => expect(window.location.pathname).toBe('/'));
    await screen.findByRole('list', { name: 'Products' });
  });

  it('forgets an expired token on load', async () => {
    localStorage.setItem(AUTH_KEY, JSON.stringify({ token: fakeToken(1), user: ana }));
    mockApi({ 'GET /products': productsHandler() });
    renderAt('/');
    expect(screen.getByRole('link', { name: 'Log in' })).toBeInTheDocument();
    expect(localStorage.getItem(AUTH_KEY)).toBeNull();
    await screen.findByRole('list', { name: 'Products' });
  });
});

describe('register', () => {
  async function fill() {
    await userEvent.type(screen.getByLabelText(/First name/), 'Ana');
    await userEvent.type(screen.getByLabelText(/Last name/), 'García');
    await userEvent.type(screen.getByLabelText(/Email/), 'ana@example.com');
    await userEvent.type(screen.getByLabelText(/Password/), 'correct horse');
    await userEvent.click(screen.getByRole('button', { name: 'Create account' }));
  }

  it('shows a 409 at the email field and offers to log in', async () => {
    mockApi({
      'POST /auth/register': { status: 409, body: { error: 'email already registered', field: 'email', request_id: 'q2' } },
    });
    renderAt('/register');
    await fill();
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('An account with this email already exists. Log in instead.');
    const email = screen.getByLabelText(/Email/);
    expect(email).toHaveAttribute('aria-invalid', 'true');
    expect(email).toHaveFocus();
  });

  it('shows the field a 400 names', async () => {
    mockApi({
      'POST /auth/register': { status: 400, body: { error: 'password: must be 8 to 72 bytes', field: 'password', request_id: 'q3' } },
    });
    renderAt('/register');
    await fill();
    await waitFor(() => expect(screen.getByLabelText(/Password/)).toHaveAttribute('aria-invalid', 'true'));
    expect(screen.getByLabelText(/Password/)).toHaveAccessibleDescription(/Password: must be 8 to 72 bytes/);
  });

  it('creates the account and signs in', async () => {
    const { calls } = mockApi({
      'POST /auth/register': { status: 201, body: { user: ana, token: fakeToken() } },
      'GET /products': productsHandler(),
    });
    renderAt('/register');
    await fill();
    await waitFor(() => expect(screen.getByText('Hi, Ana')).toBeInTheDocument());
    await screen.findByRole('list', { name: 'Products' });
    expect(calls[0].body).toEqual({ email: 'ana@example.com', password: 'correct horse', firstName: 'Ana', lastName: 'García' });
  });

  it('checks the password length before sending', async () => {
    const { calls } = mockApi({});
    renderAt('/register');
    await userEvent.type(screen.getByLabelText(/Password/), 'short');
    await userEvent.click(screen.getByRole('button', { name: 'Create account' }));
    expect(screen.getByLabelText(/First name/)).toHaveFocus();
    expect(screen.getByLabelText(/Password/)).toHaveAccessibleDescription(/At least 8 characters\. Use at least 8 characters\./);
    expect(calls).toHaveLength(0);
  });
});
