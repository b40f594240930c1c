package api

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/local"
)

// A capture stuck on a failing store fails /health with the category
// and the position, is counted in btfu_capture_errors_total, and is
// healthy again once the store works.
func TestStuckCaptureFailsHealthAndIsCounted(t *testing.T) {
	d := running(t, Options{Token: token})
	c := d.client(t)
	waitFor(t, c, "/health", 200, `"status": "ok"`)
	waitStreaming(t, d.eng)
	source.Exec(t, d.db, "INSERT INTO t(v) VALUES ('stored')")
	waitFor(t, c, "/metrics", 200, `btfu_segments_stored_total{source="app"} 1`)

	// The storage directory of the source turns into a file: every write
	// fails, as on an unmounted or read-only disk.
	dir := filepath.Join(artifact.Stored(d.eng.Artifacts()).(*local.Store).Root(), "app")
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	source.Exec(t, d.db, "INSERT INTO t(v) VALUES ('cannot be stored')")
	body := waitFor(t, c, "/health", 503, "error: store failure at ")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || len(h.Failing) != 1 || h.Failing[0].State != "error" {
		t.Fatalf("health %s (%v)", body, err)
	}
	waitFor(t, c, "/metrics", 200, `btfu_capture_errors_total{source="app",category="store"} `)
	waitFor(t, c, "/metrics", 200, `btfu_errors_total{source="app",category="capture"} 1`)
	_, js := raw(t, c, http.MethodGet, "/v1/sources")
	var st engine.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	ss := st.Sources[0]
	if ss.State != "error" || ss.Streaming || ss.Error == nil || ss.Error.Category != "store" || ss.Error.LSN == "" || ss.Error.LSN == "0/0" ||
		ss.Error.Attempts < 2 || ss.CaptureErrors["store"] < 2 || !strings.HasPrefix(ss.Attention, "error: store failure at "+ss.Error.LSN) {
		t.Fatalf("status of a stuck capture: %s", js)
	}

	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "/health", 200, `"status": "ok"`)
	if ss := sourceStatus(t, d.eng); ss.State != "streaming" || ss.Error != nil {
		t.Fatalf("after the fix: %+v", ss)
	}
}
