package restore

import (
	"context"
	"testing"
	"time"

	"github.com/btfu/btfu/internal/s3test"
	"github.com/btfu/btfu/store/artifact/s3"
)

// The whole cycle with artifacts in S3: base and segments stored there,
// verified and restored from there.
func TestRestoreFromS3(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	arts, err := s3.New(ctx, s3.Config{Bucket: s3srv.CreateBucket(t), Prefix: "btfu", Endpoint: s3srv.Endpoint(), PathStyle: true,
		Region: s3test.Region, AccessKeyID: s3srv.AccessKey(), SecretAccessKey: s3srv.SecretKey()})
	if err != nil {
		t.Fatal(err)
	}
	e := capturingTo(t, arts)
	source.Exec(t, e.db, "INSERT INTO items(name, qty) SELECT 'i' || g, g FROM generate_series(1, 200) g; INSERT INTO toasty VALUES (1, repeat('x', 5000), 1)")
	m1 := e.mark(t, "inserted")
	source.Exec(t, e.db, "UPDATE items SET qty = -qty WHERE id % 2 = 0; DELETE FROM items WHERE id % 5 = 0; UPDATE toasty SET n = 2")
	m2 := e.mark(t, "changed")
	e.waitStored(t, m2)
	rep, err := Verify(context.Background(), e.meta, e.arts, e.id)
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify of S3 artifacts: %v %v", err, rep)
	}
	for _, m := range []mark{m1, m2} {
		db, _, err := e.restore(t, Target{Time: m.at})
		if err != nil {
			t.Fatal(err)
		}
		got := contentHash(t, target, db)
		for _, tbl := range tables {
			if got[tbl] != m.hash[tbl] {
				t.Errorf("%s: table %s differs from the source", m.name, tbl)
			}
		}
	}
}
