package audit_test

import "github.com/ratatouille/rat/evidence/ima"

func marshal(es []ima.Entry) []byte { return ima.MarshalBinary(es) }
