package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/sqlite"
)

// useStore opens the store at path (creating and migrating it when it is
// new), writes and reads a little, and closes it again, as a daemon
// starting and `btfu status` polling do, until deadline.
func useStore(ctx context.Context, path, who string, deadline time.Time) error {
	for i := 0; time.Now().Before(deadline); i++ {
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			var se sqlite3.Error
			if errors.As(err, &se) {
				return fmt.Errorf("%w (SQLite extended code %d)", err, se.ExtendedCode)
			}
			return err
		}
		err = func() error {
			defer st.Close()
			src, err := st.UpsertSource(ctx, store.Source{Name: who})
			if err != nil {
				return err
			}
			if _, err := st.AddEvent(ctx, store.Event{SourceID: src.ID, Level: "info", Kind: "test", Message: strconv.Itoa(i)}); err != nil {
				return err
			}
			if _, err := st.ListSources(ctx); err != nil {
				return err
			}
			_, err = st.ListEvents(ctx, store.EventFilter{Limit: 5})
			return err
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// Several processes and goroutines open, migrate, read and write one new
// SQLite file at once, in a loop: every one of them waits for the others'
// locks, none fails with "database is locked" (the switch of a new file
// to WAL is a lock SQLite does not wait for) or a disk I/O error (a
// descriptor of the file closed in one goroutine dropped the locks of
// another's connection).
func TestConcurrentOpenersNeverFailOnALock(t *testing.T) {
	if path := os.Getenv("SQLITE_LOCK_CHILD"); path != "" {
		start, _ := strconv.ParseInt(os.Getenv("SQLITE_LOCK_START"), 10, 64)
		time.Sleep(time.Until(time.Unix(0, start)))
		if err := useStore(t.Context(), path, "child"+strconv.Itoa(os.Getpid()), time.Now().Add(400*time.Millisecond)); err != nil {
			fmt.Println("ERR", err)
			t.Fatal(err)
		}
		return
	}
	for round := 0; round < 10; round++ {
		path := filepath.Join(t.TempDir(), "btfu.db")
		// Everyone starts at once on a file nobody has created yet, so
		// the migrations race with the readers and writers.
		start := time.Now().Add(250 * time.Millisecond)
		var wg sync.WaitGroup
		errs := make(chan string, 16)
		for p := 0; p < 4; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentOpenersNeverFailOnALock$")
				cmd.Env = append(os.Environ(), "SQLITE_LOCK_CHILD="+path, "SQLITE_LOCK_START="+strconv.FormatInt(start.UnixNano(), 10))
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Sprintf("process %d: %v\n%s", p, err, out)
				}
			}()
		}
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Until(start))
				if err := useStore(t.Context(), path, "goroutine"+strconv.Itoa(g), time.Now().Add(400*time.Millisecond)); err != nil {
					errs <- fmt.Sprintf("goroutine %d: %v", g, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		var all []string
		for e := range errs {
			all = append(all, e)
		}
		if len(all) > 0 {
			t.Fatalf("round %d: %s", round, strings.Join(all, "\n"))
		}
	}
}
