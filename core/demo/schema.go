package demo

// Schema is the sample shop, created on the origin (sync copies it to the
// replica). It has a composite
// key (order_items) and a name that needs quoting ("Gift Cards").
const Schema = `
CREATE TABLE customers (
    id         integer PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    created_at timestamptz NOT NULL
);
CREATE TABLE products (
    sku   text PRIMARY KEY,
    title text NOT NULL,
    price numeric(10,2) NOT NULL,
    stock integer NOT NULL
);
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers,
    status      text NOT NULL,
    total       numeric(12,2) NOT NULL DEFAULT 0,
    placed_at   timestamptz NOT NULL
);
CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders,
    line_no  integer NOT NULL,
    sku      text NOT NULL REFERENCES products,
    qty      integer NOT NULL,
    price    numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE "Gift Cards" (
    "Code"  text PRIMARY KEY,
    balance numeric(10,2) NOT NULL,
    "Note"  text
);
`

// Data fills the shop with the same rows wherever it runs (no now(), no
// random()), so that two databases loaded with it are equal.
const Data = `
INSERT INTO customers
SELECT i, 'Customer ' || i, 'customer' || i || '@example.com',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '37 minutes'
  FROM generate_series(1, 200) i;
INSERT INTO products
SELECT 'SKU-' || lpad(i::text, 4, '0'), 'Product ' || i, (i * 7 % 100) + 0.99, 100 + i
  FROM generate_series(1, 50) i;
INSERT INTO orders (id, customer_id, status, total, placed_at)
SELECT i, 1 + i % 200, (ARRAY['new','paid','shipped','delivered'])[1 + i % 4], 0,
       timestamptz '2026-02-01 00:00:00+00' + i * interval '13 minutes'
  FROM generate_series(1, 500) i;
INSERT INTO order_items
SELECT o, l, 'SKU-' || lpad((1 + (o * 3 + l) % 50)::text, 4, '0'), 1 + (o + l) % 3, ((o * 3 + l) % 100) + 0.99
  FROM generate_series(1, 500) o, generate_series(1, 3) l
 WHERE l <= 1 + o % 3;
UPDATE orders o SET total = s.total
  FROM (SELECT order_id, sum(qty * price) AS total FROM order_items GROUP BY order_id) s
 WHERE s.order_id = o.id;
SELECT setval('orders_id_seq', 500);
INSERT INTO "Gift Cards"
SELECT 'GC-' || i, i * 5, CASE WHEN i % 3 = 0 THEN 'it''s a "gift"' END
  FROM generate_series(1, 20) i;
`
