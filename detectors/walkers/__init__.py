"""Request bodies into (key_path, value, record_index) triples: one walker per body format.

`walk(body, content_type, budget)` picks a walker by content type, else by content (when the type is
missing or generic: text/plain, application/octet-stream), and never raises on malformed input. The
registry and the sniffing order are in `dispatch`; what every walker shares (budget, sink, `Body`,
`Walker`, key paths, charsets) in `common`.

| body | kind | key paths (indexes folded to [*]) | record |
|---|---|---|---|
| JSON (json) | json | `$.orders[*].receiver.idNo` | element of the outermost array of containers |
| JSON Lines (json) | jsonl | `$.a` | line |
| form-urlencoded (text) | form | `form.sfzh` | the form |
| CSV / TSV, RFC 4180 (text) | csv, tsv | `csv[*].idNo` (header row = keys) | data row |
| XML (xml) | xml | `xml.orders.order[*].idNo` (attributes too) | outermost repeated element |
| multipart, RFC 7578/2046 (multipart) | multipart | `multipart.<field>` + part path sans root | part |
| HL7 v2 ER7 (hl7) | hl7 | `hl7.PID[*].5`, `hl7.OBR[*].31.1` (field.component) | message; each more PID |
| VCF 4.x (vcf) | vcf | `vcf[*].genotype` (`rs1801133:G/A`), `vcf.header` | sample column |
| gRPC, protobuf (grpc) | grpc | `grpc.1.3` (field numbers, repeats alike) | message; outermost repeated |
| plain text (text) | text | `text` | line |
| image, archive, PDF, TLS, other binary (binary) | binary | none | - |

Values outside every record (a JSON envelope, plain multipart fields) are one more record numbered last.
Charset: a BOM (UTF-8, UTF-16 LE/BE), else the declared charset, else UTF-8, else GB18030 (a superset of
GBK and GB2312). Binary and encrypted payloads are never scanned as text: magic numbers first, then the
share of control and undecodable characters. Every walker is iterative or depth-bounded and writes through
one budgeted sink (`WalkBudget`); a spent budget is a `walk_budget_exceeded` anomaly and keeps what was
walked.

The modules are named after their formats (`json`, `xml`); inside this package every import is absolute,
so `import json` is still the standard library's.
"""

from __future__ import annotations

from detectors.walkers.common import Triple, WalkBudget, Walked, declared_charset, decode_text, path_key
from detectors.walkers.dispatch import walk

__all__ = ["Triple", "WalkBudget", "Walked", "declared_charset", "decode_text", "path_key", "walk"]
