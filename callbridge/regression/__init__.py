"""``callbridge test``: regression tests from recorded calls and scenario files.

A recorded call's caller audio (or a scenario's caller) is played into a fresh call through the real
engine, on real sockets, into a separate temporary event store, against the configured model (the
simulated one, scripted with what the recorded caller said, when there is no API key); the new call
is checked against the test's assertions and compared turn by turn with the original.

Modules: ``spec`` (test files), ``recorded`` (a recorded call as a test), ``scenario`` (a scenario as
a test), ``rerun`` (one fresh call), ``checks`` (assertions), ``diff`` (then and now), ``output``
(text, JSON, JUnit), ``suite`` (many at once, progress, the runs kept for the console), ``command``
(the CLI); a rerun's tools answer from the recording or the test file instead of running:
``stub_spec`` (a test file's ``[tools.NAME]``), ``tool_answers`` (which answer a call gets),
``tool_stubs`` (the engine's tool registry wrapped to give it).
"""
