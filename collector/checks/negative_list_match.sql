-- check: negative_list_match
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第八条：负面清单所列数据应当申报安全评估、订立标准合同或通过认证 (Measures Art. 8: data on the list needs the mechanism the list names)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十一条第（二）项：出境数据在负面清单内的，指导数据处理者申报安全评估、订立标准合同、通过认证 (Measures Art. 11(2): data on the list follows the list's route)
-- action: 重新备案：暂停该场景出境，按负面清单条目履行相应出境路径并更新负面清单适用情况后重新备案 (suspend, complete the entry's mechanism, re-file the negative-list match)
-- For scenarios filed as exempt_outside_list: an entry of the loaded negative lists (negative_list_entries,
-- already narrowed to the processor's sector) matches when one of its field types was detected on the
-- scenario's flows in the period, or its important_subcategory appeared as a detection's sub-category, and
-- the scenario's distinct persons for the entry's field types (an entry naming only a sub-category: the
-- persons of the flows that carried it) satisfy threshold_gte (NULL = no floor) and threshold_lt (NULL =
-- no ceiling). One row per (scenario, entry); critical when the entry needs the security assessment.
-- The processor-wide count for the same field types is evidence (processor_persons).
WITH scoped AS (
    SELECT s.*
    FROM period_scenario_flows s
    JOIN scenarios sc ON sc.scenario_id = s.scenario_id
    WHERE sc.route = 'exempt_outside_list'
),
entries AS (
    SELECT list_id, entry_id,
           any_value(list_version) AS list_version, any_value(name) AS name, any_value(kind) AS kind,
           any_value(route) AS route, any_value(important_subcategory) AS important_subcategory,
           any_value(threshold_gte) AS threshold_gte, any_value(threshold_lt) AS threshold_lt,
           coalesce(list_sort(list(field_type) FILTER (WHERE field_type IS NOT NULL)), []) AS field_types
    FROM negative_list_entries
    GROUP BY list_id, entry_id
),
entry_keys AS (  -- what makes an entry's data recognisable in detections
    SELECT DISTINCT list_id, entry_id, 'field_type' AS via, field_type AS key
    FROM negative_list_entries WHERE field_type IS NOT NULL
    UNION
    SELECT DISTINCT list_id, entry_id, 'important_subcategory', important_subcategory
    FROM negative_list_entries WHERE important_subcategory IS NOT NULL
),
hits AS (
    SELECT DISTINCT s.scenario_id, k.list_id, k.entry_id, s.flow_id, s.ts_start, s.ts_end,
           d.field_type, d.important_subcategory, d.occurrences, d.key_paths, d.masked_samples
    FROM scoped s
    JOIN detections d ON d.flow_id = s.flow_id
    JOIN entry_keys k
      ON (k.via = 'field_type' AND k.key = d.field_type)
      OR (k.via = 'important_subcategory' AND k.key = d.important_subcategory)
),
type_persons AS (  -- entries with field types: persons whose records carried one of them
    SELECT s.scenario_id, k.list_id, k.entry_id, count(DISTINCT rp.person_id) AS persons
    FROM scoped s
    JOIN pi_values pv ON pv.flow_id = s.flow_id
    JOIN entry_keys k ON k.via = 'field_type' AND k.key = pv.field_type
    JOIN record_persons rp ON rp.flow_id = pv.flow_id AND rp.record_key = pv.record_key
    GROUP BY ALL
),
subcategory_persons AS (  -- entries naming only a sub-category: persons of the flows that carried it
    SELECT h.scenario_id, h.list_id, h.entry_id, count(DISTINCT rp.person_id) AS persons
    FROM (SELECT DISTINCT scenario_id, list_id, entry_id, flow_id FROM hits) h
    JOIN entries e ON e.list_id = h.list_id AND e.entry_id = h.entry_id AND array_length(e.field_types) = 0
    JOIN record_persons rp ON rp.flow_id = h.flow_id
    GROUP BY ALL
),
processor_persons AS (  -- the same field types over every cross-border flow of the processor
    SELECT k.list_id, k.entry_id, count(DISTINCT rp.person_id) AS persons
    FROM period_flows f
    JOIN pi_values pv ON pv.flow_id = f.flow_id
    JOIN entry_keys k ON k.via = 'field_type' AND k.key = pv.field_type
    JOIN record_persons rp ON rp.flow_id = pv.flow_id AND rp.record_key = pv.record_key
    GROUP BY ALL
),
per_entry AS (
    SELECT scenario_id, list_id, entry_id,
           count(DISTINCT flow_id) AS flows,
           sum(occurrences) AS occurrences,
           list_sort(list_distinct(list(field_type))) AS detected_field_types,
           coalesce(list_sort(list_distinct(list(important_subcategory)
                    FILTER (WHERE important_subcategory IS NOT NULL))), []) AS important_subcategories,
           min(ts_start) AS first_seen,
           max(ts_end) AS last_seen,
           array_slice(list_sort(list_distinct(list(flow_id))), 1, 5) AS example_flow_ids,
           array_slice(list_sort(list_distinct(flatten(list(key_paths)))), 1, 5) AS key_paths,
           array_slice(coalesce(list_sort(list_distinct(flatten(list(masked_samples) FILTER (
               WHERE field_type <> 'important_data')))), []), 1, 5) AS masked_samples
    FROM hits
    GROUP BY scenario_id, list_id, entry_id
),
matched AS (
    SELECT h.*, e.list_version, e.name, e.kind, e.route, e.field_types, e.important_subcategory,
           e.threshold_gte, e.threshold_lt,
           coalesce(tp.persons, sp.persons, 0) AS persons,
           coalesce(pp.persons, 0) AS processor_persons
    FROM per_entry h
    JOIN entries e ON e.list_id = h.list_id AND e.entry_id = h.entry_id
    LEFT JOIN type_persons tp
      ON tp.scenario_id = h.scenario_id AND tp.list_id = h.list_id AND tp.entry_id = h.entry_id
    LEFT JOIN subcategory_persons sp
      ON sp.scenario_id = h.scenario_id AND sp.list_id = h.list_id AND sp.entry_id = h.entry_id
    LEFT JOIN processor_persons pp ON pp.list_id = h.list_id AND pp.entry_id = h.entry_id
)
SELECT m.scenario_id,
       m.entry_id AS subject,
       CASE WHEN m.route = 'security_assessment' THEN 'critical' ELSE 'high' END AS severity,
       concat('route: exempt_outside_list; negative_list_match.entry_ids: [',
              array_to_string(sc.negative_list_entry_ids, ', '), ']') AS expected,
       concat(m.name, ' (', m.entry_id, '): ', m.persons, ' person(s) in the period; requires ',
              m.route) AS observed,
       m.list_id, m.list_version, m.kind, m.route AS required_route, m.field_types AS entry_field_types,
       m.important_subcategory AS entry_subcategory, m.threshold_gte, m.threshold_lt, m.persons,
       m.processor_persons, m.detected_field_types, m.important_subcategories, m.flows, m.occurrences,
       m.first_seen, m.last_seen, m.example_flow_ids, m.key_paths, m.masked_samples
FROM matched m
JOIN scenarios sc ON sc.scenario_id = m.scenario_id
WHERE (m.threshold_gte IS NULL OR m.persons >= m.threshold_gte)
  AND (m.threshold_lt IS NULL OR m.persons < m.threshold_lt)
ORDER BY m.scenario_id, m.list_id, m.entry_id
