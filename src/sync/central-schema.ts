/**
 * The central MySQL/MariaDB schema, step by step: `perch_schema.version` counts the steps
 * applied. Every synced table has triggers that bump one counter row (`sync_clock.v`, taken with
 * `LAST_INSERT_ID(v + 1)`: gapless and in commit order, since the row lock is held to commit) and
 * write the keys they touched into `change_log`, one row per gateway the key is assigned to.
 * Synced tables have no foreign keys: cascading deletes fire no triggers, so the triggers delete
 * children themselves. Names and filters use a binary collation: topics are case-sensitive.
 *
 * Keys in `change_log`: entity `account` (the account row, its grants as owner, all its rules:
 * what a gateway refreshes when an account is assigned or changes) and entity `rule` (one rule).
 * A key a gateway can no longer see in its views is deleted there.
 */

const BUMP = 'UPDATE sync_clock SET v = LAST_INSERT_ID(v + 1) WHERE id = 1'

/** Logs an account key for every gateway the account is assigned to. */
const logAccount = (seq: string, account: string, op: 'U' | 'D'): string =>
  `INSERT INTO change_log (seq, gateway_id, entity, account, name, op)
     SELECT ${seq}, ga.gateway_id, 'account', ${account}, '', '${op}' FROM gateway_accounts ga WHERE ga.account = ${account}`

const logRule = (seq: string, account: string, name: string, op: 'U' | 'D'): string =>
  `INSERT INTO change_log (seq, gateway_id, entity, account, name, op)
     SELECT ${seq}, ga.gateway_id, 'rule', ${account}, ${name}, '${op}' FROM gateway_accounts ga WHERE ga.account = ${account}`

/** A grant row came or went: its owner's account key changed on the owner's gateways. */
const ownerChanged = (name: string, event: 'INSERT' | 'DELETE', owner: string): string =>
  `CREATE TRIGGER ${name} AFTER ${event} ON grants FOR EACH ROW BEGIN
     DECLARE s BIGINT UNSIGNED;
     ${BUMP}; SET s = LAST_INSERT_ID();
     ${logAccount('s', owner, 'U')};
   END`

const TABLE_OPTIONS = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin'

/** Each step is a list of statements (no DELIMITER games: each trigger is one statement). */
export const CENTRAL_MIGRATIONS: readonly (readonly string[])[] = [
  [
    `CREATE TABLE sync_clock (
       id TINYINT PRIMARY KEY,
       v BIGINT UNSIGNED NOT NULL,
       epoch CHAR(36) NOT NULL
     ) ${TABLE_OPTIONS}`,
    'INSERT INTO sync_clock (id, v, epoch) VALUES (1, 0, UUID())',
    // Apart from the counter row, so pruning never waits on the writers' counter lock.
    `CREATE TABLE sync_prune (
       id TINYINT PRIMARY KEY,
       pruned_upto BIGINT UNSIGNED NOT NULL
     ) ${TABLE_OPTIONS}`,
    'INSERT INTO sync_prune (id, pruned_upto) VALUES (1, 0)',
    `CREATE TABLE gateways (
       id INT UNSIGNED PRIMARY KEY AUTO_INCREMENT,
       name VARCHAR(64) NOT NULL UNIQUE,
       db_user VARCHAR(80) NOT NULL UNIQUE,
       created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
     ) ${TABLE_OPTIONS}`,
    `CREATE TABLE accounts (
       name VARCHAR(64) PRIMARY KEY,
       verifier VARCHAR(255) NULL,
       admin TINYINT NOT NULL DEFAULT 0,
       enabled TINYINT NOT NULL DEFAULT 1,
       version BIGINT UNSIGNED NOT NULL DEFAULT 0,
       updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
     ) ${TABLE_OPTIONS}`,
    `CREATE TABLE gateway_accounts (
       gateway_id INT UNSIGNED NOT NULL,
       account VARCHAR(64) NOT NULL,
       PRIMARY KEY (gateway_id, account),
       KEY by_account (account)
     ) ${TABLE_OPTIONS}`,
    `CREATE TABLE grants (
       owner VARCHAR(64) NOT NULL,
       grantee VARCHAR(64) NOT NULL,
       filter VARCHAR(255) NOT NULL,
       publish TINYINT NOT NULL DEFAULT 0,
       subscribe TINYINT NOT NULL DEFAULT 0,
       PRIMARY KEY (owner, grantee, filter),
       KEY by_grantee (grantee)
     ) ${TABLE_OPTIONS}`,
    `CREATE TABLE rules (
       account VARCHAR(64) NOT NULL,
       name VARCHAR(128) NOT NULL,
       source MEDIUMTEXT NOT NULL,
       manifest TEXT NOT NULL,
       enabled TINYINT NOT NULL DEFAULT 1,
       version BIGINT UNSIGNED NOT NULL DEFAULT 0,
       updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
       PRIMARY KEY (account, name)
     ) ${TABLE_OPTIONS}`,
    `CREATE TABLE change_log (
       id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT,
       seq BIGINT UNSIGNED NOT NULL,
       gateway_id INT UNSIGNED NOT NULL,
       entity ENUM('account', 'rule') NOT NULL,
       account VARCHAR(64) NOT NULL,
       name VARCHAR(128) NOT NULL DEFAULT '',
       op CHAR(1) NOT NULL,
       changed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
       KEY gw_seq (gateway_id, seq),
       KEY by_seq (seq)
     ) ${TABLE_OPTIONS}`,

    `CREATE TRIGGER accounts_bi BEFORE INSERT ON accounts FOR EACH ROW BEGIN
       ${BUMP}; SET NEW.version = LAST_INSERT_ID();
     END`,
    // Account names are keys on every gateway and in every topic: they never change.
    `CREATE TRIGGER accounts_bu BEFORE UPDATE ON accounts FOR EACH ROW BEGIN
       IF NEW.name <> OLD.name THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'account names cannot change'; END IF;
       ${BUMP}; SET NEW.version = LAST_INSERT_ID();
     END`,
    `CREATE TRIGGER accounts_au AFTER UPDATE ON accounts FOR EACH ROW ${logAccount('NEW.version', 'NEW.name', 'U')}`,
    `CREATE TRIGGER accounts_bd BEFORE DELETE ON accounts FOR EACH ROW BEGIN
       DECLARE s BIGINT UNSIGNED;
       ${BUMP}; SET s = LAST_INSERT_ID();
       ${logAccount('s', 'OLD.name', 'D')};
       DELETE FROM grants WHERE owner = OLD.name OR grantee = OLD.name;
       DELETE FROM rules WHERE account = OLD.name;
       DELETE FROM gateway_accounts WHERE account = OLD.name;
     END`,

    `CREATE TRIGGER gateway_accounts_ai AFTER INSERT ON gateway_accounts FOR EACH ROW BEGIN
       ${BUMP};
       INSERT INTO change_log (seq, gateway_id, entity, account, name, op)
         VALUES (LAST_INSERT_ID(), NEW.gateway_id, 'account', NEW.account, '', 'U');
     END`,
    `CREATE TRIGGER gateway_accounts_ad AFTER DELETE ON gateway_accounts FOR EACH ROW BEGIN
       ${BUMP};
       INSERT INTO change_log (seq, gateway_id, entity, account, name, op)
         VALUES (LAST_INSERT_ID(), OLD.gateway_id, 'account', OLD.account, '', 'D');
     END`,

    ownerChanged('grants_ai', 'INSERT', 'NEW.owner'),
    `CREATE TRIGGER grants_au AFTER UPDATE ON grants FOR EACH ROW BEGIN
       DECLARE s BIGINT UNSIGNED;
       ${BUMP}; SET s = LAST_INSERT_ID();
       ${logAccount('s', 'NEW.owner', 'U')};
       IF NEW.owner <> OLD.owner THEN ${logAccount('s', 'OLD.owner', 'U')}; END IF;
     END`,
    ownerChanged('grants_ad', 'DELETE', 'OLD.owner'),

    `CREATE TRIGGER rules_bi BEFORE INSERT ON rules FOR EACH ROW BEGIN
       ${BUMP}; SET NEW.version = LAST_INSERT_ID();
     END`,
    `CREATE TRIGGER rules_bu BEFORE UPDATE ON rules FOR EACH ROW BEGIN
       IF NEW.account <> OLD.account OR NEW.name <> OLD.name THEN
         SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'a rule cannot move: delete it and add it again';
       END IF;
       ${BUMP}; SET NEW.version = LAST_INSERT_ID();
     END`,
    `CREATE TRIGGER rules_ai AFTER INSERT ON rules FOR EACH ROW ${logRule('NEW.version', 'NEW.account', 'NEW.name', 'U')}`,
    `CREATE TRIGGER rules_au AFTER UPDATE ON rules FOR EACH ROW ${logRule('NEW.version', 'NEW.account', 'NEW.name', 'U')}`,
    `CREATE TRIGGER rules_ad AFTER DELETE ON rules FOR EACH ROW BEGIN
       DECLARE s BIGINT UNSIGNED;
       ${BUMP}; SET s = LAST_INSERT_ID();
       ${logRule('s', 'OLD.account', 'OLD.name', 'D')};
     END`,

    // What one gateway's MySQL user may read: its own accounts, their grants and rules, and its
    // own change log. USER() is the login; the views run with their definer's rights.
    `CREATE SQL SECURITY DEFINER VIEW v_my_gateway AS
       SELECT id AS gateway_id, name FROM gateways WHERE db_user = SUBSTRING_INDEX(USER(), '@', 1)`,
    `CREATE SQL SECURITY DEFINER VIEW v_sync_clock AS
       SELECT c.v, c.epoch, p.pruned_upto FROM sync_clock c JOIN sync_prune p ON p.id = 1 WHERE c.id = 1`,
    `CREATE SQL SECURITY DEFINER VIEW v_accounts AS
       SELECT a.name, a.verifier, a.admin, a.enabled, a.version FROM accounts a
       JOIN gateway_accounts ga ON ga.account = a.name JOIN v_my_gateway g ON g.gateway_id = ga.gateway_id`,
    `CREATE SQL SECURITY DEFINER VIEW v_grants AS
       SELECT gr.owner, gr.grantee, gr.filter, gr.publish, gr.subscribe FROM grants gr
       JOIN gateway_accounts ga ON ga.account = gr.owner JOIN v_my_gateway g ON g.gateway_id = ga.gateway_id`,
    `CREATE SQL SECURITY DEFINER VIEW v_rules AS
       SELECT r.account, r.name, r.source, r.manifest, r.enabled, r.version FROM rules r
       JOIN gateway_accounts ga ON ga.account = r.account JOIN v_my_gateway g ON g.gateway_id = ga.gateway_id`,
    `CREATE SQL SECURITY DEFINER VIEW v_change_log AS
       SELECT c.seq, c.entity, c.account, c.name, c.op FROM change_log c
       JOIN v_my_gateway g ON g.gateway_id = c.gateway_id`,
  ],
]

/** The views a gateway's MySQL user is granted SELECT on, and nothing else. */
export const GATEWAY_VIEWS: readonly string[] = ['v_my_gateway', 'v_sync_clock', 'v_accounts', 'v_grants', 'v_rules', 'v_change_log']

/** The bookkeeping table of the central schema's own version. */
export const SCHEMA_TABLE = `CREATE TABLE IF NOT EXISTS perch_schema (id TINYINT PRIMARY KEY, version INT NOT NULL) ${TABLE_OPTIONS}`
