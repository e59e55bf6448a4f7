-- check: undeclared_field_type
-- severity: medium
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（二）项：备案材料载明出境数据目录 (Measures Art. 10(2): outbound data catalogue)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 限期整改：暂停出境未备案字段，更新出境数据目录并重新备案 (suspend, rectify, re-file the catalogue)
-- Per scenario: field types detected on cross-border flows to the scenario's recipients that its
-- data_catalog does not list. Severity high when the field type was sensitive PI.

-- Detections of field types the scenario's catalogue does not list, by (scenario, field type).
-- Important-data candidates are not catalogue items: the important_data check judges them.
CREATE OR REPLACE TEMP VIEW hits AS
SELECT d.field_type AS subject, d.*
FROM scenario_detections d
WHERE d.field_type <> 'important_data'
  AND NOT EXISTS (
    SELECT 1 FROM catalog_items c WHERE c.scenario_id = d.scenario_id AND c.field_type = d.field_type
);

WITH declared AS (  -- the catalogue's field types in item order
    SELECT scenario_id,
           list_transform(list_sort(list(struct_pack(item_id := item_id, field_type := field_type))),
                          lambda i: i.field_type) AS field_types
    FROM catalog_items
    GROUP BY scenario_id
),
distinct_values AS (
    SELECT h.scenario_id, h.subject, count(DISTINCT p.value_key) AS distinct_values
    FROM (SELECT DISTINCT scenario_id, subject, flow_id FROM hits) h
    JOIN pi_values p ON p.flow_id = h.flow_id AND p.field_type = h.subject
    GROUP BY h.scenario_id, h.subject
)
SELECT e.scenario_id,
       e.subject,
       CASE WHEN e.sensitive THEN 'high' ELSE 'medium' END AS severity,
       coalesce(d.field_types, []) AS expected,
       concat(e.subject, ': ', e.occurrences, ' occurrence(s) in ', e.flows, ' flow(s)') AS observed,
       e.flows, e.occurrences, coalesce(v.distinct_values, 0) AS distinct_values, e.sensitive,
       e.first_seen, e.last_seen, e.example_flow_ids, e.key_paths, e.masked_samples
FROM hit_evidence e
LEFT JOIN declared d ON d.scenario_id = e.scenario_id
LEFT JOIN distinct_values v ON v.scenario_id = e.scenario_id AND v.subject = e.subject
ORDER BY e.scenario_id, e.subject
