package postgres_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/postgres"
	"github.com/btfu/btfu/store/storetest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

func open(t *testing.T, dsn, schema string) store.Store {
	t.Helper()
	st, err := postgres.Open(t.Context(), dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestContract(t *testing.T) {
	storetest.Run(t, storetest.PerTest(
		func(t *testing.T) string { return cluster.DSN(cluster.CreateDB(t)) },
		func(t *testing.T, dsn string) store.Store { return open(t, dsn, "") }))
}

func tablesIn(t *testing.T, db, schema string) int64 {
	t.Helper()
	return pgtest.QueryValue[int64](t, cluster, db, `SELECT count(*) FROM pg_tables WHERE schemaname = $1`, schema)
}

func TestSchemaIsHonoured(t *testing.T) {
	db := cluster.CreateDB(t)
	open(t, cluster.DSN(db), "").Close()
	if n := tablesIn(t, db, postgres.DefaultSchema); n == 0 {
		t.Errorf("no tables in the default schema %q", postgres.DefaultSchema)
	}
	const odd = `Meta "Data"`
	st := open(t, cluster.DSN(db), odd)
	defer st.Close()
	if _, err := st.UpsertSource(t.Context(), store.Source{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if n := tablesIn(t, db, odd); n != tablesIn(t, db, postgres.DefaultSchema) {
		t.Errorf("%d tables in schema %q, want as many as in the default", n, odd)
	}
	if n := pgtest.QueryValue[int64](t, cluster, db, `SELECT count(*) FROM "Meta ""Data""".sources`); n != 1 {
		t.Errorf("%d sources in schema %q, want 1", n, odd)
	}
	if n := pgtest.QueryValue[int64](t, cluster, db, `SELECT count(*) FROM btfu.sources`); n != 0 {
		t.Errorf("%d sources in the default schema, want 0", n)
	}
	if n := tablesIn(t, db, "public"); n != 0 {
		t.Errorf("%d tables in public, want 0", n)
	}
}

func TestSchemaTooNewIsRefused(t *testing.T) {
	db := cluster.CreateDB(t)
	open(t, cluster.DSN(db), "").Close()
	cluster.Exec(t, db, fmt.Sprintf(`INSERT INTO btfu.schema_version (version, applied_at) VALUES (%d, 0)`, store.SchemaVersion+1))
	_, err := postgres.Open(t.Context(), cluster.DSN(db), "")
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
	for _, w := range []string{db, fmt.Sprintf("schema version %d", store.SchemaVersion+1), fmt.Sprintf("only up to %d", store.SchemaVersion), "upgrade btfu"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestConcurrentOpensOfAFreshDatabase(t *testing.T) {
	db := cluster.CreateDB(t)
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			st, err := postgres.Open(t.Context(), cluster.DSN(db), "")
			if err == nil {
				err = st.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := pgtest.QueryValue[int64](t, cluster, db, `SELECT count(*) FROM btfu.schema_version`); n != int64(store.SchemaVersion) {
		t.Errorf("%d schema_version rows, want %d", n, store.SchemaVersion)
	}
}

// TestMigratedStoreNeedsNoDDLRights: a worker role with only data rights
// opens a store an administrator migrated.
func TestMigratedStoreNeedsNoDDLRights(t *testing.T) {
	db := cluster.CreateDB(t)
	open(t, cluster.DSN(db), "").Close()
	role := "worker_" + strings.TrimPrefix(db, "t_")
	cluster.Exec(t, db, fmt.Sprintf(`CREATE ROLE %[1]s LOGIN PASSWORD 'pw';
		REVOKE CREATE ON DATABASE %[2]s FROM PUBLIC;
		GRANT USAGE ON SCHEMA btfu TO %[1]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA btfu TO %[1]s;
		GRANT USAGE ON ALL SEQUENCES IN SCHEMA btfu TO %[1]s`, role, db))
	t.Cleanup(func() {
		cluster.Exec(t, db, "DROP OWNED BY "+role)
		cluster.Exec(t, "postgres", "DROP ROLE "+role)
	})
	st := open(t, cluster.DSNFor(role, "pw", db), "")
	defer st.Close()
	if _, err := st.UpsertSource(t.Context(), store.Source{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	// The same role cannot create a store: the error says so and where.
	_, err := postgres.Open(t.Context(), cluster.DSNFor(role, "pw", db), "other")
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), db) {
		t.Errorf("Open without rights = %v, want permission denied naming the database", err)
	}
}

func TestErrorsNeverShowThePassword(t *testing.T) {
	const secret = "s3cr3t-pw"
	for _, dsn := range []string{
		fmt.Sprintf("postgres://btfu:%s@127.0.0.1:1/meta?sslmode=disable&connect_timeout=5", secret), // nothing listens
		fmt.Sprintf("postgres://btfu:%s@127.0.0.1:%d/meta?sslmode=disable", secret, cluster.Port),    // wrong password
		fmt.Sprintf("postgres://btfu:%s@127.0.0.1:99999999/meta", secret),                            // unparsable
		fmt.Sprintf("host=127.0.0.1 password=%s port=x", secret),
	} {
		_, err := postgres.Open(t.Context(), dsn, "")
		if err == nil {
			t.Errorf("Open succeeded")
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the password: %v", err)
		}
		t.Log(err)
	}
}
