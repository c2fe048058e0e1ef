-- The directory database as hatoba wrote it at schema version 7: version 1's
-- tables, changed by each migration up to 7, with the same rows plus what
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
-- 3: a user's own quota in MiB (NULL = the server's, 0 = none).
ALTER TABLE users ADD COLUMN quota_mb INTEGER;
-- 4: SCRAM-SHA-256 keys (NULL until the next login or password change).
ALTER TABLE users ADD COLUMN scram_sha256 TEXT;
-- 5: the login throttle and the pairs that logged in.
CREATE TABLE login_throttle (
    scope         TEXT NOT NULL,
    address       TEXT NOT NULL,
    account       TEXT NOT NULL,
    level         REAL NOT NULL,
    updated       REAL NOT NULL,
    strikes       INTEGER NOT NULL DEFAULT 0,
    blocked_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, address, account)
);
CREATE TABLE login_known (
    pair  BLOB PRIMARY KEY,
    last  REAL NOT NULL
);
-- 6: POP-before-SMTP windows.
CREATE TABLE pop_before_smtp (
    address TEXT PRIMARY KEY,
    login   TEXT NOT NULL,
    expires REAL NOT NULL
);
-- 7: greylisting, spam lists, Junk feedback, DMARC report rows.
CREATE TABLE greylist (
    triplet    BLOB PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    passed     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE greylist_clients (
    network TEXT PRIMARY KEY,
    passes  INTEGER NOT NULL,
    last    REAL NOT NULL
);
CREATE TABLE spam_senders (
    account TEXT NOT NULL,
    sender  TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
    PRIMARY KEY (account, sender)
);
CREATE TABLE junk_feedback (
    account    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    verdict    TEXT NOT NULL CHECK (verdict IN ('spam', 'ham')),
    at         REAL NOT NULL,
    PRIMARY KEY (account, message_id)
);
CREATE TABLE dmarc_results (
    day           TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    policy        TEXT NOT NULL,
    rua           TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    header_from   TEXT NOT NULL,
    envelope_to   TEXT NOT NULL,
    disposition   TEXT NOT NULL,
    dkim_aligned  TEXT NOT NULL,
    spf_aligned   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    auth          TEXT NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (day, policy_domain, source_ip, header_from, envelope_to, disposition,
                 dkim_aligned, spf_aligned, reason, auth)
);
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (7);

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
UPDATE users SET quota_mb = 100 WHERE address_key = 'alice@example.test';
INSERT INTO login_throttle VALUES ('address', '192.0.2.7', '', 3.5, 1700000100, 1, 0);
INSERT INTO pop_before_smtp VALUES ('192.0.2.8', 'alice@example.test', 1700000200);
INSERT INTO spam_senders VALUES ('alice@example.test', '@spam.example', 'block');
INSERT INTO greylist_clients VALUES ('192.0.2.0/24', 3, 1700000300);
