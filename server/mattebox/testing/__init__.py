"""What tests and benches share, as numpy.testing is for numpy: real server processes (:mod:`.servers`), engines
that exercise the server's mechanics (:mod:`.engines`), a loose lasso as an artist draws one (:mod:`.lasso`) and
real video frames (:mod:`.footage`).

The rule (docs/architecture.md, "Tests and benches"): benches never import ``tests``; what both need lives here.
Nothing in the server imports this package.
"""
