package predict_test

import (
	"testing"

	"github.com/ratatouille/rat/ota/predict"
	"github.com/ratatouille/rat/ota/rootfs"
	"github.com/ratatouille/rat/ota/testimage"
)

// BenchmarkPredict measures a tcb prediction (every file hashed) of the
// test root file system (~3.4 MB apparent, a 3 MiB holed file included)
// from each image format.
func BenchmarkPredict(b *testing.B) {
	src := testimage.Source(b)
	for name, img := range map[string]string{
		"dir":      src,
		"tar.gz":   testimage.Tar(b, src, "gzip"),
		"squashfs": testimage.Squashfs(b, src, "gzip"),
		"ext4":     testimage.Ext4(b, src),
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				r, err := rootfs.Open(img)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := predict.Predict(r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
