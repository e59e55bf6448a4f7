-- check: undeclared_field_type
-- severity: medium
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（二）项：备案材料载明出境数据目录 (Measures Art. 10(2): outbound data catalogue)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 限期整改：暂停出境未备案字段，更新出境数据目录并重新备案 (suspend, rectify, re-file the catalogue)
-- params: $period_from, $period_to
-- Per scenario: field types detected on cross-border flows to the scenario's recipients that its
-- data_catalog does not list. Severity high when the field type was sensitive PI.
WITH scoped AS (
    SELECT * FROM scenario_flows WHERE ts_start >= $period_from AND ts_start < $period_to
),
declared AS (
    SELECT scenario_id, list(field_type ORDER BY item_id) AS field_types
    FROM catalog_items
    GROUP BY scenario_id
),
hits AS (
    SELECT s.scenario_id, s.ts_start, s.ts_end, s.bytes_out, d.*
    FROM scoped s
    JOIN detections d ON d.flow_id = s.flow_id
    -- Important-data candidates are not catalogue items: the important_data check judges them.
    WHERE d.field_type <> 'important_data'
      AND NOT EXISTS (
        SELECT 1 FROM catalog_items c WHERE c.scenario_id = s.scenario_id AND c.field_type = d.field_type
    )
),
distinct_values AS (
    SELECT h.scenario_id, h.field_type, count(DISTINCT p.value_key) AS distinct_values
    FROM (SELECT DISTINCT scenario_id, flow_id, field_type FROM hits) h
    JOIN pi_values p ON p.flow_id = h.flow_id AND p.field_type = h.field_type
    GROUP BY h.scenario_id, h.field_type
),
per_type AS (
    SELECT scenario_id, field_type,
           count(DISTINCT flow_id) AS flows,
           sum(occurrences) AS occurrences,
           bool_or(sensitive) AS sensitive,
           min(ts_start) AS first_seen,
           max(ts_end) AS last_seen,
           list(flow_id ORDER BY ts_start, flow_id)[1:5] AS example_flow_ids,
           list_sort(list_distinct(flatten(list(key_paths))))[1:5] AS key_paths,
           list_sort(list_distinct(flatten(list(masked_samples))))[1:5] AS masked_samples
    FROM hits
    GROUP BY scenario_id, field_type
)
SELECT t.scenario_id,
       t.field_type AS subject,
       CASE WHEN t.sensitive THEN 'high' ELSE 'medium' END AS severity,
       coalesce(d.field_types, []) AS expected,
       format('{}: {} occurrence(s) in {} flow(s)', t.field_type, t.occurrences, t.flows) AS observed,
       t.flows, t.occurrences, coalesce(v.distinct_values, 0) AS distinct_values, t.sensitive,
       t.first_seen, t.last_seen, t.example_flow_ids, t.key_paths, t.masked_samples
FROM per_type t
LEFT JOIN declared d ON d.scenario_id = t.scenario_id
LEFT JOIN distinct_values v ON v.scenario_id = t.scenario_id AND v.field_type = t.field_type
ORDER BY t.scenario_id, t.field_type
