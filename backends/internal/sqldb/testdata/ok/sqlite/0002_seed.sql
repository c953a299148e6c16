INSERT INTO counters (name, value) VALUES ('hits', 0);
