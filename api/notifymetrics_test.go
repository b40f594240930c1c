package api

import (
	"bytes"
	"testing"

	"github.com/btfu/btfu/notify"
)

// Each channel's notification counters are counters labelled by channel
// and kind.
func TestNotificationMetrics(t *testing.T) {
	var buf bytes.Buffer
	writeNotifyMetrics(&buf, []notify.ChannelStats{
		{Channel: "ops-slack", Kind: "slack", Sent: 3, Failed: 1},
		{Channel: "dead", Kind: "webhook", Dropped: 42, Failed: 5},
	})
	got := parseExposition(t, buf.String())
	for series, want := range map[string]float64{
		`btfu_notifications_sent_total{channel="ops-slack",kind="slack"}`:   3,
		`btfu_notifications_failed_total{channel="ops-slack",kind="slack"}`: 1,
		`btfu_notifications_dropped_total{channel="dead",kind="webhook"}`:   42,
		`btfu_notifications_failed_total{channel="dead",kind="webhook"}`:    5,
		`btfu_notifications_sent_total{channel="dead",kind="webhook"}`:      0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v\n%s", series, v, ok, want, buf.String())
		}
	}
}
