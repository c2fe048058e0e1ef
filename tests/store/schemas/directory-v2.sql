-- The directory database as hatoba wrote it at schema version 2: version 1's
-- tables, changed by each migration up to 2, with the same rows plus what
-- the new columns and tables hold.
CREATE TABLE domains (
    name    TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE users (
    address_key   TEXT PRIMARY KEY,
    address       TEXT NOT NULL,
    domain        TEXT NOT NULL REFERENCES domains(name),
    password_hash TEXT NOT NULL,
    created       INTEGER NOT NULL
);
CREATE INDEX users_domain ON users(domain);
CREATE TABLE aliases (
    id            INTEGER PRIMARY KEY,
    source_key    TEXT NOT NULL,
    source        TEXT NOT NULL,
    domain        TEXT NOT NULL REFERENCES domains(name),
    target_key    TEXT NOT NULL,
    target        TEXT NOT NULL,
    target_domain TEXT NOT NULL,
    UNIQUE (source_key, target_key)
);
CREATE INDEX aliases_target ON aliases(target_key);
CREATE INDEX aliases_target_domain ON aliases(target_domain);
CREATE INDEX aliases_domain ON aliases(domain);
-- 2: APOP secrets, sealed (NULL = APOP off).
ALTER TABLE users ADD COLUMN apop_secret TEXT;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (2);

INSERT INTO domains VALUES ('example.test', 1700000000), ('example.org', 1700000001);
INSERT INTO users (address_key, address, domain, password_hash, created) VALUES
    ('alice@example.test', 'alice@example.test', 'example.test',
     '$argon2id$v=19$m=1024,t=1,p=1$7CR4UddZu/jHHPSu/R8riA$hGRCCsL5L46Ci3XR+hUAXGldY1V7IpDFBswvYLV8b7s', 1700000002),
    ('bob@example.test', 'Bob@example.test', 'example.test',
     '$argon2id$v=19$m=1024,t=1,p=1$dgYSFd88hB4fQR/FPTpxAA$JdMmoyAebn3U5rYgiuHR5Rvex/QA4mJg1HeCrqeHmvY', 1700000003);
INSERT INTO aliases (source_key, source, domain, target_key, target, target_domain) VALUES
    ('postmaster@example.test', 'postmaster@example.test', 'example.test', 'alice@example.test', 'alice@example.test', 'example.test'),
    ('team@example.test', 'team@example.test', 'example.test', 'alice@example.test', 'alice@example.test', 'example.test'),
    ('team@example.test', 'team@example.test', 'example.test', 'bob@example.test', 'Bob@example.test', 'example.test'),
    ('all@example.test', 'all@example.test', 'example.test', 'team@example.test', 'team@example.test', 'example.test'),
    ('@example.org', '@example.org', 'example.org', 'alice@example.test', 'alice@example.test', 'example.test'),
    ('forward@example.test', 'forward@example.test', 'example.test', 'someone@elsewhere.example', 'someone@elsewhere.example', 'elsewhere.example');
UPDATE users SET apop_secret = 'sealed-apop-secret' WHERE address_key = 'bob@example.test';
