-- check: important_data
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第八条第（一）项：向境外提供重要数据应当申报数据出境安全评估 (Measures Art. 8(1): important data needs the security assessment)
-- basis: 《促进和规范数据跨境流动规定》第七条：向境外提供重要数据应当申报数据出境安全评估 (P16 Art. 7: important data needs the security assessment)
-- action: 核实并暂停出境：确认是否属于重要数据（行业主管部门目录或片区意见）；属实则暂停该场景出境并申报数据出境安全评估 (confirm with the sector catalogue or zone opinion; if confirmed, suspend and apply for the security assessment)
-- Important-data candidates (any detections row with an important_subcategory: the agent's important_data
-- rows and PI types that imply a sub-category, health_medical -> 28, genetic -> 27) on cross-border flows to a
-- scenario whose route is not security_assessment. One row per (scenario, sub-category); the subject is the
-- sub-category id of the Measures' appendix. Traffic only gives candidates: every row says so (candidate).
WITH per_subcategory AS (
    SELECT d.scenario_id, d.important_subcategory,
           count(DISTINCT d.flow_id) AS flows,
           sum(d.occurrences) AS occurrences,
           max(d.confidence) AS confidence,
           list_sort(list_distinct(list(d.field_type))) AS field_types,
           min(d.ts_start) AS first_seen,
           max(d.ts_end) AS last_seen,
           array_slice(list_sort(list_distinct(list(d.flow_id))), 1, 5) AS example_flow_ids,
           array_slice(list_sort(list_distinct(flatten(list(d.key_paths)))), 1, 5) AS key_paths,
           -- the agent's important_data rows carry the matched term names (config words), never values
           array_slice(coalesce(list_sort(list_distinct(flatten(list(d.masked_samples) FILTER (
               WHERE d.field_type = 'important_data')))), []), 1, 8) AS matched_terms,
           array_slice(coalesce(list_sort(list_distinct(flatten(list(d.masked_samples) FILTER (
               WHERE d.field_type <> 'important_data')))), []), 1, 5) AS masked_samples
    FROM scenario_detections d
    JOIN scenarios sc ON sc.scenario_id = d.scenario_id
    WHERE d.important_subcategory IS NOT NULL
      AND sc.route <> 'security_assessment'
    GROUP BY d.scenario_id, d.important_subcategory
)
SELECT p.scenario_id,
       p.important_subcategory AS subject,
       'high' AS severity,
       concat('route: ', sc.route, '; negative_list_match.subcategory: ',
              coalesce(sc.negative_list_subcategory, 'null')) AS expected,
       concat('important-data candidate, sub-category ', p.important_subcategory, ': ', p.flows,
              ' flow(s), evidence ', array_to_string(p.field_types, ', '), ' (confidence ',
              round(p.confidence, 2), ')') AS observed,
       true AS candidate,
       sc.route,
       'security_assessment' AS required_route,
       sc.negative_list_subcategory AS filed_subcategory,
       p.field_types, p.flows, p.occurrences, p.confidence, p.first_seen, p.last_seen,
       p.example_flow_ids, p.key_paths, p.matched_terms, p.masked_samples
FROM per_subcategory p
JOIN scenarios sc ON sc.scenario_id = p.scenario_id
ORDER BY p.scenario_id, try_cast(p.important_subcategory AS INTEGER), p.important_subcategory
