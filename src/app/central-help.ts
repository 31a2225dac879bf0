/** `perch central --help`. */
export const CENTRAL_HELP = `Usage: perch central <command> [options] --mysql URL

Administers the central MySQL/MariaDB database that gateways take their
accounts, grants and rules from (the "sync" section of their config).

Commands:
  init                                 create the schema, or bring it up to date
  status [--json]                      schema version, counter, epoch, pruned
                                       position, gateways and their accounts
  gateway add NAME [--host H] [--port P] [--gateway-host PATTERN]
                                       add a gateway with its own MySQL user
                                       'perch_gw_NAME'@'PATTERN' (default %) that
                                       may only read the gateway views; print its
                                       config (JSON, with the user's password)
                                       for perch start --config FILE; H and P:
                                       where the gateway reaches the server
                                       (default: the host and port of URL)
  gateway list [--json]                gateways, MySQL users, account counts
  gateway rm NAME                      drop its MySQL user and its assignments
  account add NAME [--password P] [--password-file F] [--admin] [--disabled]
                                       --password - reads stdin; with neither, a
                                       random password is made up and printed
  account passwd NAME [--password P] [--password-file F]
  account list [--gateway G] [--json]  accounts, or those assigned to G
  account disable|enable|rm NAME       refuse or allow its logins; remove it
                                       with its grants, rules and assignments
  assign|unassign GATEWAY ACCOUNT      sync ACCOUNT to GATEWAY, or stop
  grant add OWNER GRANTEE FILTER --publish|--subscribe
                                       let GRANTEE publish and/or subscribe under
                                       /OWNER/ (FILTER relative to it or absolute)
  grant rm OWNER GRANTEE FILTER [--publish] [--subscribe]   (both: no flag)
  grant list [ACCOUNT] [--json]        grants given or received by ACCOUNT
  rule push ACCOUNT NAME FILE [--manifest M]
                                       compile and store a rule (a new version;
                                       manifest as in perch rule push); on a
                                       syntax error nothing is stored
  rule list [ACCOUNT] [--json]         rules: version, enabled, size, updated
  rule disable|enable|rm ACCOUNT NAME  stop, start or remove it on every gateway
  epoch reset                          make every gateway load everything again
                                       (after restoring the database from a backup)
  prune --keep N                       delete change-log rows older than the
                                       newest N positions (a gateway further
                                       behind loads everything again)

Options:
  --mysql URL   admin login: mysql://user:password@host:port/database
                (?ssl=1 for TLS); default: $PERCH_CENTRAL_URL
  -h, --help    show this help
`
