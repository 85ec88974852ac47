"""Semi-synthetic training data: melasma painted onto real photos of faces without melasma.

`tone` measures and shifts skin tone (ITA), `paint` draws pigment into the MASI regions found by
`melasma.regions`, `generate` writes a labelled set (`python -m melasma synth --base-photos DIR`).
"""
