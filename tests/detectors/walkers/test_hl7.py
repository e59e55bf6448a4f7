"""walkers.hl7: HL7 v2 ER7 messages into field and component paths."""

from __future__ import annotations

import pytest

from detectors.walkers import walk

_MSH = "MSH|^~\\&|HIS|HZ|LIS|P|20260303||ORU^R01|M1|P|2.5.1"


@pytest.mark.parametrize(
    ("body", "content_type", "triples"),
    [
        # MSH fields numbered from MSH-3 (MSH-1 is the separator, MSH-2 the encoding characters);
        # components get their own paths; PID-5 family^given is one name; segments end in CR
        ((_MSH + "\rPID|1||110105^^^CHN||张^三||19850412|M\r").encode(), "application/hl7-v2",
         [("hl7.MSH[*].3", "HIS", 0), ("hl7.MSH[*].4", "HZ", 0), ("hl7.MSH[*].5", "LIS", 0),
          ("hl7.MSH[*].6", "P", 0), ("hl7.MSH[*].7", "20260303", 0), ("hl7.MSH[*].9.1", "ORU", 0),
          ("hl7.MSH[*].9.2", "R01", 0), ("hl7.MSH[*].10", "M1", 0), ("hl7.MSH[*].11", "P", 0),
          ("hl7.MSH[*].12", "2.5.1", 0), ("hl7.PID[*].1", "1", 0), ("hl7.PID[*].3.1", "110105", 0),
          ("hl7.PID[*].3.4", "CHN", 0), ("hl7.PID[*].5", "张三", 0), ("hl7.PID[*].7", "19850412", 0),
          ("hl7.PID[*].8", "M", 0)]),
        # LF segments, sniffed from text/plain; a Latin name given first; repetitions (~) share a path
        (b"MSH|^~\\&|A\nPID|1||||Smith^John^Q~Doe^Jane\n", "text/plain",
         [("hl7.MSH[*].3", "A", 0), ("hl7.PID[*].1", "1", 0), ("hl7.PID[*].5", "John Q Smith", 0),
          ("hl7.PID[*].5", "Jane Doe", 0)]),
        # records: one per message, and one more per further PID in a message; OBR follows its PID
        (b"MSH|^~\\&|A\rPID|1||||A^B\rOBR|1||||||||||||||||||||||||||||||E11.9^x^I10\r"
         b"PID|2||||C^D\rMSH|^~\\&|B\rPID|1||||E^F\r", None,
         [("hl7.MSH[*].3", "A", 0), ("hl7.PID[*].1", "1", 0), ("hl7.PID[*].5", "B A", 0),
          ("hl7.OBR[*].1", "1", 0), ("hl7.OBR[*].31.1", "E11.9", 0), ("hl7.OBR[*].31.2", "x", 0),
          ("hl7.OBR[*].31.3", "I10", 0), ("hl7.PID[*].1", "2", 1), ("hl7.PID[*].5", "D C", 1),
          ("hl7.MSH[*].3", "B", 2), ("hl7.PID[*].1", "1", 2), ("hl7.PID[*].5", "F E", 2)]),
        # escapes (\F\ is a literal |); other separators declared in MSH-2; MLLP framing bytes dropped
        (b"\x0bMSH#^~\\&#A\\F\\B\rNTE#1##x|y\r\x1c\r", "application/hl7-v2",
         [("hl7.MSH[*].3", "A|B", 0), ("hl7.NTE[*].1", "1", 0), ("hl7.NTE[*].3", "x|y", 0)]),
    ],
)
def test_hl7_walk_table(body, content_type, triples):
    walked = walk(body, content_type)
    assert walked.kind == "hl7"
    assert list(walked.triples) == triples
