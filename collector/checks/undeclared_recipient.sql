-- check: undeclared_recipient
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（二）项：备案材料载明境外接收方 (Measures Art. 10(2): overseas recipient)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 限期整改：暂停向未备案接收方出境，就该接收方重新申请备案 (suspend, rectify, re-file the recipient)
-- PI or important-data candidates on cross-border flows to a destination that no declared recipient's
-- endpoints cover. One row per destination (server name, else IP). Severity rises to critical when the
-- data is sensitive PI or an important-data candidate.

-- PI exports on flows no declared recipient's endpoints cover, by destination (evidence.sql rolls them up)
CREATE OR REPLACE TEMP VIEW hits AS
SELECT NULL::VARCHAR AS scenario_id, e.destination AS subject, e.*
FROM pi_exports e
WHERE NOT EXISTS (SELECT 1 FROM flow_recipients fr WHERE fr.flow_id = e.flow_id);

WITH declared AS (
    SELECT coalesce(list_sort(list(value)), []) AS endpoints FROM recipient_endpoints
)
SELECT e.scenario_id,
       e.subject,
       CASE WHEN e.sensitive OR array_length(e.important_subcategories) > 0 THEN 'critical' ELSE 'high' END
           AS severity,
       d.endpoints AS expected,
       concat(e.flows, ' flow(s) to ', e.subject, ' (', array_to_string(e.countries, ', '), ') carrying ',
              array_to_string(e.field_types, ', ')) AS observed,
       e.flows, e.bytes_out, e.occurrences, e.first_seen, e.last_seen, e.countries, e.dst_ips,
       e.field_types, e.important_subcategories, e.sensitive, e.example_flow_ids, e.key_paths,
       -- as reported so far: the matched term names of important-data candidates among the samples
       array_slice(list_sort(list_distinct(list_concat(e.masked_samples, e.matched_terms))), 1, 5)
           AS masked_samples
FROM hit_evidence e
CROSS JOIN declared d
ORDER BY e.subject
