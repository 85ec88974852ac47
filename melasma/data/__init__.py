"""Data layer: safe image decoding, dataset manifests, splits, the decode-once cache, synthetic
demo faces and lesion masks. Import the submodules directly (e.g. `melasma.data.images`)."""
