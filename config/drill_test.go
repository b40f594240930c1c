package config

import (
	"strings"
	"testing"
)

func TestDrillKeys(t *testing.T) {
	src := "[[source]]\nname = \"orders\"\ndsn = \"postgres://app:pw-src@db.example.com:5432/shop\"\ntimezone = \"Europe/Paris\"\n"
	c, err := parse(t, src+"drill_schedule = \"0 4 * * 0\"\ndrill_target = \"postgres://btfu:pw-scratch@scratch.example.com:5432/postgres\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Sources[0]; s.DrillSchedule != "0 4 * * 0" || s.DrillTarget == "" || DrillOff(s.DrillSchedule) {
		t.Errorf("drill keys not read: %+v", s)
	}
	shown, err := c.Show()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(shown, "pw-scratch") || !strings.Contains(shown, "scratch.example.com") {
		t.Errorf("config show must mask drill_target's password and keep its host:\n%s", shown)
	}
	if c, err := parse(t, src); err != nil || !DrillOff(c.Sources[0].DrillSchedule) {
		t.Errorf("no drill_schedule must mean no scheduled drills: %v", err)
	}
	for _, tc := range []struct{ text, want string }{
		{"drill_schedule = \"every sunday\"\ndrill_target = \"postgres://h2/postgres\"", "source.orders.drill_schedule: 'every sunday' is not a cron expression; try '0 4 * * 0'"},
		{"drill_schedule = \"@weekly\"", "source.orders.drill_target: missing: drill_schedule needs a server"},
		{"drill_target = \"postgres://other@db.example.com:5432/scratch\"", "source.orders.drill_target: is the source's server (db.example.com:5432)"},
	} {
		_, err := parse(t, src+tc.text+"\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant it to contain %s", tc.text, err, tc.want)
		}
	}
}
