package compact

// WithStep returns o calling f after each step (see Options.step).
func WithStep(o Options, f func(name string)) Options {
	o.step = f
	return o
}
