"""Merging the figures of a gateway's processes (SIP workers) into one answer."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from rtc64.web.merge import merge_lists, merge_metrics, reporting

W0 = b"""# HELP rtc64_build_info rtc64 version
# TYPE rtc64_build_info gauge
rtc64_build_info{version="0.1.0"} 1.0
# HELP rtc64_uptime_seconds seconds since start
# TYPE rtc64_uptime_seconds gauge
rtc64_uptime_seconds 100.0
# HELP rtc64_event_loop_lag_seconds event loop lateness (smoothed)
# TYPE rtc64_event_loop_lag_seconds gauge
rtc64_event_loop_lag_seconds 0.002
# HELP rtc64_sip_requests_total SIP requests received
# TYPE rtc64_sip_requests_total counter
rtc64_sip_requests_total{family="IPv4",method="INVITE",transport="udp"} 3.0
rtc64_sip_requests_created{family="IPv4",method="INVITE",transport="udp"} 1.7e+09
# HELP rtc64_registrations registered contacts
# TYPE rtc64_registrations gauge
rtc64_registrations{family="IPv4",transport="udp"} 12.0
"""
W1 = b"""# HELP rtc64_build_info rtc64 version
# TYPE rtc64_build_info gauge
rtc64_build_info{version="0.1.0"} 1.0
# HELP rtc64_uptime_seconds seconds since start
# TYPE rtc64_uptime_seconds gauge
rtc64_uptime_seconds 5.0
# HELP rtc64_event_loop_lag_seconds event loop lateness (smoothed)
# TYPE rtc64_event_loop_lag_seconds gauge
rtc64_event_loop_lag_seconds 0.5
# HELP rtc64_sip_requests_total SIP requests received
# TYPE rtc64_sip_requests_total counter
rtc64_sip_requests_total{family="IPv4",method="INVITE",transport="udp"} 4.0
rtc64_sip_requests_total{family="IPv6",method="BYE",transport="udp"} 1.0
rtc64_sip_requests_created{family="IPv4",method="INVITE",transport="udp"} 1.6e+09
"""
TURN = b"""# HELP rtc64_turn_allocations live TURN relayed addresses
# TYPE rtc64_turn_allocations gauge
rtc64_turn_allocations{client_family="IPv6",relay_family="IPv4"} 2.0
"""


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_counters_add_up_and_process_figures_do_not() -> None:
    merged = merge_metrics([W0, W1, TURN]) + reporting(3)
    got = _samples(merged)  # the official parser reads it back
    invite = (("family", "IPv4"), ("method", "INVITE"), ("transport", "udp"))
    assert got["rtc64_sip_requests_total", invite] == 7.0
    assert got["rtc64_sip_requests_total", (("family", "IPv6"), ("method", "BYE"),
                                            ("transport", "udp"))] == 1.0  # fmt: skip
    assert got["rtc64_sip_requests_created", invite] == 1.6e9  # the earliest
    assert got["rtc64_build_info", (("version", "0.1.0"),)] == 1.0
    assert got["rtc64_uptime_seconds", ()] == 100.0  # worker 0's
    assert got["rtc64_event_loop_lag_seconds", ()] == 0.5  # the largest
    assert got["rtc64_registrations", (("family", "IPv4"), ("transport", "udp"))] == 12.0
    assert got["rtc64_turn_allocations", (("client_family", "IPv6"),
                                          ("relay_family", "IPv4"))] == 2.0  # fmt: skip
    assert got["rtc64_processes_reporting", ()] == 3.0
    assert merged.count(b"# TYPE rtc64_sip_requests_total counter") == 1


def test_garbage_from_a_process_is_skipped_not_fatal() -> None:
    merged = merge_metrics([W0, b'not metrics\nrtc64_x{a="1"} notanumber\n\xff\xfe'])
    assert _samples(merged)[("rtc64_uptime_seconds", ())] == 100.0


def test_lists_are_concatenated() -> None:
    own = {"calls": [{"call_id": "a"}]}
    others = [json.dumps({"calls": [{"call_id": "b"}]}).encode(), b"{bad", b"[]", b"{}"]
    assert merge_lists(own, others, "calls") == {"calls": [{"call_id": "a"}, {"call_id": "b"}]}


def test_the_overview_counts_the_other_processes_calls_and_allocations() -> None:
    from rtc64.web.merge import allocations_of, call_families_of  # noqa: PLC0415

    calls = json.dumps(
        {"calls": [{"families": ["IPv6", "IPv4"]}, {"families": ["IPv4"]}, {"families": 3}]}
    ).encode()
    assert call_families_of([calls, b"junk"]) == [
        ("IPv6", "IPv4"),
        ("IPv4", "unknown"),
        ("unknown", "unknown"),
    ]
    turn = json.dumps({"enabled": True, "allocations": [{}, {}]}).encode()
    assert allocations_of([turn, b"{}"]) == 2


def test_history_samples_add_the_other_processes_latest() -> None:
    from rtc64.web.merge import add_latest  # noqa: PLC0415

    own = {"time": 100.0, "calls": 1, "relay_packets": 10}
    other = json.dumps({"samples": [{"time": 1.0, "calls": 5}, {"time": 99.0, "calls": 2,
                                                                 "relay_packets": 7}]})  # fmt: skip
    assert add_latest(own, [other.encode(), b"{}", b"bad"]) == {
        "time": 100.0,
        "calls": 3,
        "relay_packets": 17,
    }
