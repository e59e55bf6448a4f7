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

-- The detections an entry recognises (by field type or sub-category) on flows of exempt_outside_list
-- scenarios, one row per (scenario, list, entry, detection). The evidence is rolled up per list and entry
-- (two lists may share an entry id: each is its own match), so the hit's subject is `list_id/entry_id`
-- and the finding's subject the entry id.
CREATE OR REPLACE TEMP VIEW hits AS
WITH entry_keys AS (
    SELECT DISTINCT list_id, entry_id, 'field_type' AS via, field_type AS key
    FROM negative_list_entries WHERE field_type IS NOT NULL
    UNION
    SELECT DISTINCT list_id, entry_id, 'important_subcategory', important_subcategory
    FROM negative_list_entries WHERE important_subcategory IS NOT NULL
)
SELECT DISTINCT d.scenario_id, concat(k.list_id, '/', k.entry_id) AS subject, k.list_id, k.entry_id,
       d.flow_id, d.field_type,
       d.important_subcategory, d.occurrences, d.sensitive, d.confidence, d.key_paths, d.masked_samples
FROM scenario_detections d
JOIN scenarios sc ON sc.scenario_id = d.scenario_id
JOIN entry_keys k
  ON (k.via = 'field_type' AND k.key = d.field_type)
  OR (k.via = 'important_subcategory' AND k.key = d.important_subcategory)
WHERE sc.route = 'exempt_outside_list';

WITH entries AS (
    SELECT list_id, entry_id,
           any_value(list_version) AS list_version, any_value(name) AS name, any_value(kind) AS kind,
           any_value(route) AS route, any_value(important_subcategory) AS important_subcategory,
           any_value(threshold_gte) AS threshold_gte, any_value(threshold_lt) AS threshold_lt,
           coalesce(list_sort(list(field_type) FILTER (WHERE field_type IS NOT NULL)), []) AS field_types
    FROM negative_list_entries
    GROUP BY list_id, entry_id
),
entry_types AS (  -- the field types that make an entry's persons
    SELECT DISTINCT list_id, entry_id, field_type
    FROM negative_list_entries WHERE field_type IS NOT NULL
),
hit_entries AS (  -- each flagged (scenario, entry) with its list
    SELECT DISTINCT scenario_id, subject AS hit_key, entry_id, list_id FROM hits
),
type_persons AS (  -- entries with field types: persons whose records carried one of them
    SELECT s.scenario_id, k.list_id, k.entry_id, count(DISTINCT rp.person_id) AS persons
    FROM period_scenario_flows s
    JOIN scenarios sc ON sc.scenario_id = s.scenario_id AND sc.route = 'exempt_outside_list'
    JOIN pi_values pv ON pv.flow_id = s.flow_id
    JOIN entry_types k ON k.field_type = pv.field_type
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
    JOIN entry_types k ON k.field_type = pv.field_type
    JOIN record_persons rp ON rp.flow_id = pv.flow_id AND rp.record_key = pv.record_key
    GROUP BY ALL
),
matched AS (
    SELECT ev.*, he.list_id, he.entry_id, en.list_version, en.name, en.kind, en.route, en.field_types AS entry_field_types,
           en.important_subcategory AS entry_subcategory, en.threshold_gte, en.threshold_lt,
           coalesce(tp.persons, sp.persons, 0) AS persons,
           coalesce(pp.persons, 0) AS processor_persons
    FROM hit_evidence ev
    JOIN hit_entries he ON he.scenario_id = ev.scenario_id AND he.hit_key = ev.subject
    JOIN entries en ON en.list_id = he.list_id AND en.entry_id = he.entry_id
    LEFT JOIN type_persons tp
      ON tp.scenario_id = ev.scenario_id AND tp.list_id = he.list_id AND tp.entry_id = he.entry_id
    LEFT JOIN subcategory_persons sp
      ON sp.scenario_id = ev.scenario_id AND sp.list_id = he.list_id AND sp.entry_id = he.entry_id
    LEFT JOIN processor_persons pp ON pp.list_id = he.list_id AND pp.entry_id = he.entry_id
)
SELECT m.scenario_id,
       m.entry_id AS subject,
       CASE WHEN m.route = 'security_assessment' THEN 'critical' ELSE 'high' END AS severity,
       concat('route: exempt_outside_list; negative_list_match.entry_ids: [',
              array_to_string(sc.negative_list_entry_ids, ', '), ']') AS expected,
       concat(m.name, ' (', m.entry_id, '): ', m.persons, ' person(s) in the period; requires ',
              m.route) AS observed,
       m.list_id, m.list_version, m.kind, m.route AS required_route, m.entry_field_types,
       m.entry_subcategory, m.threshold_gte, m.threshold_lt, m.persons,
       m.processor_persons, m.field_types AS detected_field_types, m.important_subcategories, m.flows,
       m.occurrences, m.first_seen, m.last_seen, m.example_flow_ids, m.key_paths, m.masked_samples
FROM matched m
JOIN scenarios sc ON sc.scenario_id = m.scenario_id
WHERE (m.threshold_gte IS NULL OR m.persons >= m.threshold_gte)
  AND (m.threshold_lt IS NULL OR m.persons < m.threshold_lt)
ORDER BY m.scenario_id, m.list_id, m.entry_id
