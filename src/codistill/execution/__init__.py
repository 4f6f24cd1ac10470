"""Sandboxed execution of untrusted programs and the judge that turns runs into verdicts."""
