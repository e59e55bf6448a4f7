-- check: undeclared_field_type
-- severity: medium
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（二）项：备案材料载明出境数据目录 (Measures Art. 10(2): outbound data catalogue)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 限期整改：暂停出境未备案字段，更新出境数据目录并重新备案 (suspend, rectify, re-file the catalogue)
-- Per scenario: field types detected on cross-border flows to the scenario's recipients that its
-- data_catalog does not list. Severity high when the field type was sensitive PI.
WITH declared AS (  -- the catalogue's field types in item order
    SELECT scenario_id,
           list_transform(list_sort(list(struct_pack(item_id := item_id, field_type := field_type))),
                          lambda i: i.field_type) AS field_types
    FROM catalog_items
    GROUP BY scenario_id
),
hits AS (
    SELECT d.*
    FROM scenario_detections d
    -- Important-data candidates are not catalogue items: the important_data check judges them.
    WHERE d.field_type <> 'important_data'
      AND NOT EXISTS (
        SELECT 1 FROM catalog_items c WHERE c.scenario_id = d.scenario_id AND c.field_type = d.field_type
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
           -- the first five in time order (ties by id)
           array_slice(list_transform(list_sort(list(struct_pack(ts := ts_start, id := flow_id))),
                                      lambda f: f.id), 1, 5) AS example_flow_ids,
           array_slice(list_sort(list_distinct(flatten(list(key_paths)))), 1, 5) AS key_paths,
           array_slice(list_sort(list_distinct(flatten(list(masked_samples)))), 1, 5) AS masked_samples
    FROM hits
    GROUP BY scenario_id, field_type
)
SELECT t.scenario_id,
       t.field_type AS subject,
       CASE WHEN t.sensitive THEN 'high' ELSE 'medium' END AS severity,
       coalesce(d.field_types, []) AS expected,
       concat(t.field_type, ': ', t.occurrences, ' occurrence(s) in ', t.flows, ' flow(s)') AS observed,
       t.flows, t.occurrences, coalesce(v.distinct_values, 0) AS distinct_values, t.sensitive,
       t.first_seen, t.last_seen, t.example_flow_ids, t.key_paths, t.masked_samples
FROM per_type t
LEFT JOIN declared d ON d.scenario_id = t.scenario_id
LEFT JOIN distinct_values v ON v.scenario_id = t.scenario_id AND v.field_type = t.field_type
ORDER BY t.scenario_id, t.field_type
