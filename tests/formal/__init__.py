"""Formal proofs of the gateware with SymbiYosys (`sim.formal`); see docs/formal.md."""
