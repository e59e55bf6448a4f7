-- check: important_data
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第八条第（一）项：向境外提供重要数据应当申报数据出境安全评估 (Measures Art. 8(1): important data needs the security assessment)
-- basis: 《促进和规范数据跨境流动规定》第七条：向境外提供重要数据应当申报数据出境安全评估 (P16 Art. 7: important data needs the security assessment)
-- action: 核实并暂停出境：确认是否属于重要数据（行业主管部门目录或片区意见）；属实则暂停该场景出境并申报数据出境安全评估 (confirm with the sector catalogue or zone opinion; if confirmed, suspend and apply for the security assessment)
-- params: $period_from, $period_to
-- Important-data candidates (any detections row with an important_subcategory: the agent's important_data
-- rows and PI types that imply a sub-category, health_medical -> 28, genetic -> 27) on cross-border flows to a
-- scenario whose route is not security_assessment. One row per (scenario, sub-category); the subject is the
-- sub-category id of the Measures' appendix. Traffic only gives candidates: every row says so (candidate).
WITH scoped AS (
    SELECT * FROM scenario_flows WHERE ts_start >= $period_from AND ts_start < $period_to
),
hits AS (
    SELECT s.scenario_id, s.ts_start, s.ts_end, d.*
    FROM scoped s
    JOIN detections d ON d.flow_id = s.flow_id
    JOIN scenarios sc ON sc.scenario_id = s.scenario_id
    WHERE d.important_subcategory IS NOT NULL
      AND sc.route <> 'security_assessment'
),
per_subcategory AS (
    SELECT scenario_id, important_subcategory,
           count(DISTINCT flow_id) AS flows,
           sum(occurrences) AS occurrences,
           max(confidence) AS confidence,
           list_sort(list_distinct(list(field_type))) AS field_types,
           min(ts_start) AS first_seen,
           max(ts_end) AS last_seen,
           list_sort(list_distinct(list(flow_id)))[1:5] AS example_flow_ids,
           list_sort(list_distinct(flatten(list(key_paths))))[1:5] AS key_paths,
           -- the agent's important_data rows carry the matched term names (config words), never values
           coalesce(list_sort(list_distinct(flatten(list(masked_samples) FILTER (
               WHERE field_type = 'important_data')))), [])[1:8] AS matched_terms,
           coalesce(list_sort(list_distinct(flatten(list(masked_samples) FILTER (
               WHERE field_type <> 'important_data')))), [])[1:5] AS masked_samples
    FROM hits
    GROUP BY scenario_id, important_subcategory
)
SELECT p.scenario_id,
       p.important_subcategory AS subject,
       'high' AS severity,
       format('route: {}; negative_list_match.subcategory: {}', sc.route,
              coalesce(sc.negative_list_subcategory, 'null')) AS expected,
       format('important-data candidate, sub-category {}: {} flow(s), evidence {} (confidence {})',
              p.important_subcategory, p.flows, array_to_string(p.field_types, ', '),
              round(p.confidence, 2)) AS observed,
       true AS candidate,
       sc.route,
       'security_assessment' AS required_route,
       sc.negative_list_subcategory AS filed_subcategory,
       p.field_types, p.flows, p.occurrences, p.confidence, p.first_seen, p.last_seen,
       p.example_flow_ids, p.key_paths, p.matched_terms, p.masked_samples
FROM per_subcategory p
JOIN scenarios sc ON sc.scenario_id = p.scenario_id
ORDER BY p.scenario_id, try_cast(p.important_subcategory AS INTEGER), p.important_subcategory
