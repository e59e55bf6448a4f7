"""walkers.text: CSV / TSV tables (header row = keys, one record per data row)."""

from __future__ import annotations

import pytest

from detectors.walkers import walk

_CSV_GBK = 'idNo,xm,dz\r\n11010519491231002X,"张三","浙江省,杭州市"\r\n2,"李""四",x\r\n'.encode("gbk")


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "triples"),
    [
        # RFC 4180 quoting (comma and doubled quote inside), GBK without a declared charset
        (_CSV_GBK, "text/csv", "csv",
         [("csv[*].idNo", "11010519491231002X", 0), ("csv[*].xm", "张三", 0),
          ("csv[*].dz", "浙江省,杭州市", 0),
          ("csv[*].idNo", "2", 1), ("csv[*].xm", '李"四', 1), ("csv[*].dz", "x", 1)]),
        (b"a\tb\n1\t2\n\n3\t4\n", "text/tab-separated-values", "tsv",
         [("csv[*].a", "1", 0), ("csv[*].b", "2", 0), ("csv[*].a", "3", 1), ("csv[*].b", "4", 1)]),
        # delimiter sniffed; an untyped table is recognised by content
        (b"sjh;xm\n13800138000;A\n13900139000;B\n", None, "csv",
         [("csv[*].sjh", "13800138000", 0), ("csv[*].xm", "A", 0),
          ("csv[*].sjh", "13900139000", 1), ("csv[*].xm", "B", 1)]),
        # a value-like header cell never becomes a key; cells beyond the header are still scanned
        (b"13800138000,xm\n1,A,extra\n", "text/csv", "csv",
         [("csv[*].<value>", "1", 0), ("csv[*].xm", "A", 0), ("csv[*].*", "extra", 0)]),
    ],
)
def test_csv_table(body, content_type, kind, triples):
    walked = walk(body, content_type)
    assert (walked.kind, list(walked.triples)) == (kind, triples)
