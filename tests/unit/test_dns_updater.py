"""The RFC 2136 engine's choices that BIND alone cannot show: ANY fallback and the messages it builds."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.opcode
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring

from lablease.dns.updater import TsigKey, Updater


class RecordingUpdater(Updater):
    """Replaces only the network exchange (the narrow boundary) with canned answers."""

    def __init__(self, answer_any):
        key = dns.tsigkeyring.from_text({"k.": ("hmac-sha256", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0")})
        super().__init__("lab.example", "127.0.0.1", 53, TsigKey(name=next(iter(key)), keyring=key))
        self.sent: list[dns.message.Message] = []
        self.answer_any = answer_any

    async def _exchange(self, message):
        self.sent.append(message)
        answer = dns.message.make_response(message)
        if message.opcode() == dns.opcode.UPDATE:
            return answer
        answer.flags |= dns.flags.AA
        rdtype = message.question[0].rdtype
        name = message.question[0].name
        if rdtype == dns.rdatatype.ANY:
            answer.answer = self.answer_any(name)
        elif rdtype == dns.rdatatype.A:
            answer.answer = [dns.rrset.from_text(name, 300, "IN", "A", "10.0.0.1")]
        elif rdtype == dns.rdatatype.AAAA:
            answer.answer = [dns.rrset.from_text(name, 300, "IN", "AAAA", "fd00::1")]
        return answer


def _full(name):
    return [dns.rrset.from_text(name, 300, "IN", "AAAA", "fd00::1"), dns.rrset.from_text(name, 300, "IN", "A", "10.0.0.1"),
            dns.rrset.from_text(name, 300, "IN", "TXT", '"x"')]


def _rfc8482(name):
    return [dns.rrset.from_text(name, 3789, "IN", "HINFO", '"RFC8482" ""')]


def test_one_any_query_reads_both_address_families_from_an_authoritative_server():
    updater = RecordingUpdater(_full)
    assert asyncio.run(updater.addresses("node1.lab.example.")) == ["10.0.0.1", "fd00::1"]
    assert [m.question[0].rdtype for m in updater.sent] == [dns.rdatatype.ANY]


def test_a_minimal_any_answer_falls_back_to_a_and_aaaa_queries_for_good():
    updater = RecordingUpdater(_rfc8482)
    assert asyncio.run(updater.addresses("node1.lab.example.")) == ["10.0.0.1", "fd00::1"]
    asyncio.run(updater.addresses("node1.lab.example."))
    kinds = [m.question[0].rdtype for m in updater.sent]
    assert kinds == [dns.rdatatype.ANY, dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.A, dns.rdatatype.AAAA]


def test_replace_sends_one_signed_message_deleting_both_sets_then_adding():
    updater = RecordingUpdater(lambda name: [])
    old, changed = asyncio.run(updater.replace("node1.lab.example.", ["10.0.0.2", "fd00::2"]))
    assert (old, changed) == ([], True)
    update = updater.sent[-1]
    assert update.opcode() == dns.opcode.UPDATE and update.keyname.to_text() == "k."
    text = [r.to_text() for r in update.update]
    assert text == ["node1.lab.example. ANY A", "node1.lab.example. ANY AAAA",
                    "node1.lab.example. 300 IN A 10.0.0.2", "node1.lab.example. 300 IN AAAA fd00::2"]


def test_replace_with_the_same_addresses_sends_no_update():
    updater = RecordingUpdater(_full)
    assert asyncio.run(updater.replace("node1.lab.example.", ["10.0.0.1", "fd00::1"])) == (["10.0.0.1", "fd00::1"], False)
    assert all(m.opcode() != dns.opcode.UPDATE for m in updater.sent)
