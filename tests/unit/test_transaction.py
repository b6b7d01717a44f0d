"""The transaction state machines against RFC 3261 figures 5-8 (and Table 4's timers)."""
import pytest

from runtime.sip.transaction import (INVITE_CLIENT, INVITE_SERVER, NON_INVITE_CLIENT,
                                     NON_INVITE_SERVER, T1, T2, T4, Machine, response_class)


def names(actions):
    return [a if arg is None else (a, arg) for a, arg in actions]


def test_response_classes():
    assert [response_class(c) for c in (100, 183, 200, 299, 300, 486, 699)] == \
        ["1xx", "1xx", "2xx", "2xx", "300-699", "300-699", "300-699"]


# --- Figure 5: INVITE client ---------------------------------------------------------------

def test_invite_client_start_and_timer_a_doubling():
    m = Machine(INVITE_CLIENT)
    assert m.state == "calling"
    assert names(m.start_actions()) == [("start", ("A", T1)), ("start", ("B", 64 * T1))]
    intervals = []
    for _ in range(4):
        acts = m.feed("timer_A")
        assert acts[0] == ("retransmit", None)
        intervals.append(acts[1][1][1])
    assert intervals == [2 * T1, 4 * T1, 8 * T1, 16 * T1]  # A is not capped at T2


def test_invite_client_timer_b_times_out_in_calling():
    m = Machine(INVITE_CLIENT)
    m.start_actions()
    acts = names(m.feed("timer_B"))
    assert "timeout" in acts and m.state == "terminated"


def test_invite_client_provisional_then_non_2xx():
    m = Machine(INVITE_CLIENT)
    m.start_actions()
    assert names(m.feed("1xx")) == [("stop", "A"), ("stop", "B"), "to_tu"]
    assert m.state == "proceeding"
    assert m.feed("timer_B") == []  # stopped: no timeout once it rang
    acts = names(m.feed("300-699"))
    assert acts == ["send_ack", "to_tu", ("start", ("D", 32.0))]
    assert m.state == "completed"
    assert names(m.feed("300-699")) == ["send_ack"]  # a retransmitted final: ACK again
    assert m.feed("timer_D")[-1] == ("terminated", None)


def test_invite_client_2xx_terminates_and_passes_up():
    m = Machine(INVITE_CLIENT)
    m.start_actions()
    acts = names(m.feed("2xx"))
    assert "to_tu" in acts and m.state == "terminated"


def test_invite_client_reliable_transport_has_no_a_and_no_d_wait():
    m = Machine(INVITE_CLIENT, reliable=True)
    assert names(m.start_actions()) == [("start", ("B", 64 * T1))]
    m.feed("300-699")
    assert m.intervals["D"] == 0


# --- Figure 6: non-INVITE client -----------------------------------------------------------

def test_non_invite_client_timer_e_caps_at_t2_and_uses_t2_once_proceeding():
    m = Machine(NON_INVITE_CLIENT)
    assert names(m.start_actions()) == [("start", ("E", T1)), ("start", ("F", 64 * T1))]
    seen = [m.feed("timer_E")[1][1][1] for _ in range(5)]
    assert seen == [2 * T1, 4 * T1, T2, T2, T2]
    m.feed("1xx")
    assert m.state == "proceeding"
    assert m.feed("timer_E")[1] == ("start", ("E", T2))


def test_non_invite_client_final_then_timer_k():
    m = Machine(NON_INVITE_CLIENT)
    m.start_actions()
    acts = names(m.feed("2xx"))
    assert acts == [("stop", "E"), ("stop", "F"), "to_tu", ("start", ("K", T4))]
    assert m.feed("2xx") == []  # retransmissions absorbed in completed
    assert m.feed("timer_K")[-1] == ("terminated", None)


def test_non_invite_client_timer_f():
    m = Machine(NON_INVITE_CLIENT)
    m.start_actions()
    m.feed("1xx")
    assert "timeout" in names(m.feed("timer_F"))


# --- Figure 7: INVITE server ---------------------------------------------------------------

def test_invite_server_retransmissions_and_non_2xx():
    m = Machine(INVITE_SERVER)
    assert m.state == "proceeding"
    assert names(m.feed("send_1xx")) == ["send_response"]
    assert names(m.feed("request")) == ["retransmit"]
    acts = names(m.feed("send_300-699"))
    assert acts == ["send_response", ("start", ("G", T1)), ("start", ("H", 64 * T1))]
    assert m.state == "completed"
    assert names(m.feed("request")) == ["retransmit"]
    g = [m.feed("timer_G")[1][1][1] for _ in range(4)]
    assert g == [2 * T1, 4 * T1, T2, T2]
    acts = names(m.feed("ACK"))
    assert acts == [("stop", "G"), ("stop", "H"), ("start", ("I", T4))]
    assert m.state == "confirmed"
    assert m.feed("ACK") == []  # absorbed
    assert m.feed("timer_I")[-1] == ("terminated", None)


def test_invite_server_timer_h_without_ack():
    m = Machine(INVITE_SERVER)
    m.feed("send_300-699")
    assert "timeout" in names(m.feed("timer_H"))


def test_invite_server_2xx_terminates():
    m = Machine(INVITE_SERVER)
    m.feed("send_2xx")
    assert m.state == "terminated"


# --- Figure 8: non-INVITE server -----------------------------------------------------------

def test_non_invite_server():
    m = Machine(NON_INVITE_SERVER)
    assert m.state == "trying"
    assert m.feed("request") == []  # nothing sent yet: nothing to repeat
    m.feed("send_1xx")
    assert m.state == "proceeding"
    assert names(m.feed("request")) == ["retransmit"]
    acts = names(m.feed("send_2xx"))
    assert acts == ["send_response", ("start", ("J", 64 * T1))]
    assert names(m.feed("request")) == ["retransmit"]
    assert m.feed("timer_J")[-1] == ("terminated", None)


@pytest.mark.parametrize("table", [INVITE_CLIENT, NON_INVITE_CLIENT, INVITE_SERVER,
                                   NON_INVITE_SERVER])
def test_every_transition_names_a_known_state(table):
    for state, row in table.items():
        for event, (nxt, _) in row.items():
            assert nxt in table, (state, event, nxt)
    assert table["terminated"] == {}
