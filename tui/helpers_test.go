package tui

import "fmt"

func fmtType(v any) string { return fmt.Sprintf("%T", v) }

func fmtSize(name string, size [2]int) string { return fmt.Sprintf("%s_%dx%d", name, size[0], size[1]) }
