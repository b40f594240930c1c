package probe

import (
	"strings"
)

// Providers btfu recognises, for hints.
const (
	ProviderSelfHosted = "self-hosted"
	ProviderRDS        = "rds"
	ProviderAurora     = "aurora"
	ProviderCloudSQL   = "cloudsql"
	ProviderAzure      = "azure"
	ProviderNeon       = "neon"
	ProviderSupabase   = "supabase"
)

// detectProvider guesses the hosting provider from the host name and the
// server's settings.
func detectProvider(host string, settings map[string]bool) string {
	h := strings.ToLower(host)
	switch {
	case strings.Contains(h, "supabase.co") || strings.Contains(h, "supabase.com"):
		return ProviderSupabase
	case strings.Contains(h, "neon.tech"):
		return ProviderNeon
	case strings.Contains(h, ".cluster-") && strings.Contains(h, "rds.amazonaws.com"), settings["aurora_version"]:
		return ProviderAurora
	case strings.Contains(h, "rds.amazonaws.com"), settings["rds.logical_replication"]:
		return ProviderRDS
	case strings.Contains(h, "postgres.database.azure.com"), settings["azure.extensions"]:
		return ProviderAzure
	case settings["cloudsql.logical_decoding"]:
		return ProviderCloudSQL
	}
	return ProviderSelfHosted
}

// walLevelFix says how to turn on logical decoding at each provider.
func walLevelFix(provider string) string {
	switch provider {
	case ProviderRDS, ProviderAurora:
		return "set rds.logical_replication = 1 in the instance's (Aurora: cluster's) parameter group and reboot it"
	case ProviderCloudSQL:
		return "set the database flag cloudsql.logical_decoding = on (the instance restarts)"
	case ProviderAzure:
		return "set the server parameter wal_level = logical (Azure portal, Server parameters) and restart the server"
	case ProviderNeon:
		return "enable logical replication in the Neon project settings (Settings > Logical Replication)"
	case ProviderSupabase:
		return "Supabase runs wal_level = logical by default; contact support if it is not"
	}
	return "set wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
}

// replicationGrantFix says how to give a role the right to replicate.
func replicationGrantFix(provider, role string) string {
	switch provider {
	case ProviderRDS, ProviderAurora:
		return "GRANT rds_replication TO " + role
	case ProviderCloudSQL:
		return "ALTER ROLE " + role + " WITH REPLICATION (as cloudsqlsuperuser)"
	case ProviderAzure:
		return "ALTER ROLE " + role + " WITH REPLICATION (as azure_pg_admin)"
	case ProviderNeon:
		return "use the project owner role, or enable logical replication and ALTER ROLE " + role + " WITH REPLICATION"
	}
	return "ALTER ROLE " + role + " WITH REPLICATION"
}

// poolerByName recognises transaction-pooler endpoints from the host and
// port, which strip replication connections.
func poolerByName(host string, port uint16) string {
	h := strings.ToLower(host)
	switch {
	case strings.Contains(h, "pooler.supabase.com"):
		return "Supabase's connection pooler (Supavisor)"
	case strings.Contains(h, "supabase.co") && port == 6543:
		return "Supabase's transaction pooler (port 6543)"
	case strings.Contains(h, "-pooler.") && strings.Contains(h, "neon.tech"):
		return "Neon's pooled endpoint (-pooler)"
	case strings.Contains(h, ".proxy-") && strings.Contains(h, "rds.amazonaws.com"):
		return "RDS Proxy"
	case port == 6432:
		return "PgBouncer (port 6432)"
	}
	return ""
}

// directEndpointFix says where the direct endpoint is.
func directEndpointFix(provider string) string {
	switch provider {
	case ProviderSupabase:
		return "use the direct connection (db.<project>.supabase.co:5432) or the session pooler on port 5432, not the transaction pooler"
	case ProviderNeon:
		return "remove -pooler from the host name to use the direct endpoint"
	case ProviderRDS, ProviderAurora:
		return "connect to the instance or cluster endpoint, not RDS Proxy"
	}
	return "connect to PostgreSQL directly, not through PgBouncer or another pooler"
}
