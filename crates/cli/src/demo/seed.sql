-- The demo shop: realistic shapes, fake people. Every value that looks like
-- PII or a secret is made up, but shaped so that real detectors accept it
-- (masking must hide what a scanner would find): names from a fixed list,
-- Luhn-valid test card numbers published by card networks, mod-97-valid
-- example IBANs, SSNs in the issued ranges, GitHub tokens with a correct
-- checksum, tokens derived from row ids.
CREATE TABLE customers (
    id            bigserial PRIMARY KEY,
    full_name     text NOT NULL,
    email         text NOT NULL UNIQUE,
    phone         text,
    ssn           text,
    date_of_birth date,
    address       text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payment_methods (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
    card_number text,
    card_expiry text,
    iban        text
);

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
    label       text NOT NULL,
    token       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          serial PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents >= 0)
);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers,
    status      text NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    total_cents integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    order_id    bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
    product_id  integer NOT NULL REFERENCES products,
    quantity    integer NOT NULL CHECK (quantity > 0),
    price_cents integer NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE payments (
    id            bigserial PRIMARY KEY,
    order_id      bigint NOT NULL REFERENCES orders,
    method_id     bigint REFERENCES payment_methods,
    amount_cents  integer NOT NULL,
    status        text NOT NULL CHECK (status IN ('authorized', 'captured', 'refunded', 'failed')),
    processor_ref text,
    paid_at       timestamptz
);

INSERT INTO customers (full_name, email, phone, ssn, date_of_birth, address, created_at)
SELECT f.name || ' ' || l.name,
       lower(f.name || '.' || l.name || i) || '@example.com',
       '+1-555-' || lpad((100 + i % 900)::text, 3, '0') || '-' || lpad((i * 37 % 10000)::text, 4, '0'),
       (100 + i * 7 % 565)::text || '-' || lpad((i % 99 + 1)::text, 2, '0') || '-' || lpad((1 + i * 7919 % 9999)::text, 4, '0'),
       date '1960-01-01' + (i * 97 % 15000),
       (i * 13 % 9000 + 100)::text || ' ' || s.name || ' Street, Springfield',
       now() - (i || ' days')::interval
FROM generate_series(1, 200) AS i
JOIN LATERAL (SELECT (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Margaret','Ken','Radia','Linus','Frances','John'])[1 + i % 12] AS name) f ON true
JOIN LATERAL (SELECT (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth','Hamilton','Thompson','Perlman','Torvalds','Allen','Backus','Ritchie'])[1 + i % 13] AS name) l ON true
JOIN LATERAL (SELECT (ARRAY['Oak','Maple','Cedar','Elm','Pine','Birch'])[1 + i % 6] AS name) s ON true;

INSERT INTO payment_methods (customer_id, card_number, card_expiry, iban)
SELECT c.id,
       (ARRAY['4111111111111111','5555555555554444','378282246310005','4012888888881881','6011111111111117'])[1 + c.id % 5],
       lpad((1 + c.id % 12)::text, 2, '0') || '/' || (27 + c.id % 5)::text,
       (ARRAY['DE89370400440532013000','GB82WEST12345698765432','FR1420041010050500013M02606','NL91ABNA0417164300'])[1 + c.id % 4]
FROM customers c;

INSERT INTO api_tokens (customer_id, label, token)
SELECT c.id, 'integration', 'sk_live_' || encode(sha256(('portcullis-demo-' || c.id)::bytea), 'hex')
FROM customers c WHERE c.id % 3 = 0;

INSERT INTO api_tokens (customer_id, label, token)
SELECT c.id, 'github',
       (ARRAY['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','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',
              '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','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',
              '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','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'])[1 + c.id % 6]
FROM customers c WHERE c.id % 10 = 1;

INSERT INTO products (sku, name, price_cents)
SELECT 'SKU-' || lpad(i::text, 4, '0'),
       (ARRAY['Keyboard','Mouse','Monitor','Laptop stand','USB-C cable','Headset','Webcam','Desk lamp'])[1 + i % 8] || ' model ' || i,
       (500 + i * 731 % 20000)
FROM generate_series(1, 40) AS i;

-- 1500 orders: more than the 1000 rows production's default row limit lets
-- one statement change, so the demo can show an oversized UPDATE refused.
INSERT INTO orders (customer_id, status, created_at)
SELECT 1 + (i * 17) % 200,
       (ARRAY['pending','paid','shipped','cancelled'])[1 + i % 4],
       now() - (i || ' hours')::interval
FROM generate_series(1, 1500) AS i;

INSERT INTO order_items (order_id, product_id, quantity, price_cents)
SELECT o.id, p.id, 1 + (o.id + p.id) % 3, p.price_cents
FROM orders o
JOIN products p ON p.id IN (1 + o.id % 40, 1 + (o.id * 7) % 40);

UPDATE orders o SET total_cents = t.total
FROM (SELECT order_id, sum(quantity * price_cents) AS total FROM order_items GROUP BY order_id) t
WHERE t.order_id = o.id;

INSERT INTO payments (order_id, method_id, amount_cents, status, processor_ref, paid_at)
SELECT o.id, pm.id, o.total_cents,
       CASE o.status WHEN 'cancelled' THEN 'refunded' WHEN 'pending' THEN 'authorized' ELSE 'captured' END,
       'ch_' || substr(md5('charge-' || o.id), 1, 24),
       o.created_at + interval '5 minutes'
FROM orders o JOIN payment_methods pm ON pm.customer_id = o.customer_id;

ANALYZE;
