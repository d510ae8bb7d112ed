package ima_test

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/ratatouille/rat/evidence/ima"
)

// Replay a real kernel's IMA log into the sha256 bank of PCR 10.
func Example() {
	f, err := os.Open("../../testdata/ima/ubuntu2404-kernel68-ima-ng-sha256.ascii")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	entries, err := ima.ParseASCII(f)
	if err != nil {
		fmt.Println(err)
		return
	}
	pcr10, _ := ima.Replay(entries, crypto.SHA256, nil)
	fmt.Println(len(entries), "entries; PCR 10 starts", hex.EncodeToString(pcr10)[:8])
	// Output: 780 entries; PCR 10 starts 0a1447c3
}
