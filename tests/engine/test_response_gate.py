"""When ``response.create`` may be sent (engine/response_gate.py)."""

from callbridge.engine.response_gate import ResponseGate


def test_create_waits_for_the_asking_response_to_finish_and_for_every_output() -> None:
    gate = ResponseGate()
    gate.response_created("resp1")
    gate.tool_requested("call1")
    gate.tool_requested("call2")
    gate.output_arrived("call1")
    assert not gate.take()  # resp1 still running, call2 still awaited
    gate.response_done("resp1")
    assert not gate.take()  # call2 still awaited
    gate.output_arrived("call2")
    assert gate.take()
    assert not gate.take()  # never twice for one set of outputs


def test_a_response_started_by_the_server_after_the_outputs_covers_them() -> None:
    gate = ResponseGate()
    gate.tool_requested("call1")
    gate.output_arrived("call1")
    gate.response_created("resp_vad")  # the caller spoke; server VAD started a response
    gate.response_done("resp_vad")
    assert not gate.take()


def test_a_busy_refusal_or_a_new_session_lets_the_request_go_again() -> None:
    gate = ResponseGate()
    gate.asked()
    assert gate.take()
    gate.refused_as_busy()
    assert gate.take()
    gate.link_lost()
    gate.asked()
    assert gate.take()


def test_an_out_of_band_reply_blocks_others_while_it_runs_but_answers_nothing() -> None:
    gate = ResponseGate()
    gate.tool_requested("call1")
    gate.out_of_band_requested()  # "one moment…" while the tool runs
    gate.output_arrived("call1")
    assert not gate.take()  # the filler was requested and not yet started
    gate.response_created("resp_filler", out_of_band=True)
    assert not gate.take()  # it is running
    gate.response_done("resp_filler")
    assert gate.take()  # the real answer to the tool output is still owed
