export interface User {
  id: number;
  email: string;
  firstName: string;
  lastName: string;
  role?: string;
  created_at?: string;
}

export interface AuthResponse {
  user: User;
  token: string;
}

export interface Product {
  id: number;
  name: string;
  description: string;
  price: number;
  category: string;
  inventory: number;
  created_at?: string;
}

export interface OrderItem {
  product_id: number;
  quantity: number;
  // The orders service may echo the unit price and name; both are optional here.
  price?: number;
  unit_price?: number;
  name?: string;
  product_name?: string;
}

export type OrderStatus = 'pending' | 'paid' | 'shipped' | 'delivered' | 'cancelled' | 'failed' | string;

export interface Order {
  id: number | string;
  user_id?: number | string;
  items: OrderItem[];
  total: number;
  status: OrderStatus;
  shipping_address: unknown;
  created_at?: string;
  updated_at?: string;
}

export interface Card {
  number: string;
  exp_month: number;
  exp_year: number;
  cvc: string;
}

export interface ProductPage {
  products: Product[];
  total: number | null;
  hasNext: boolean;
  hasPrev: boolean;
}
