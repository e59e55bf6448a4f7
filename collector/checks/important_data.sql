-- check: important_data
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第八条第（一）项：向境外提供重要数据应当申报数据出境安全评估 (Measures Art. 8(1): important data needs the security assessment)
-- basis: 《促进和规范数据跨境流动规定》第七条：向境外提供重要数据应当申报数据出境安全评估 (P16 Art. 7: important data needs the security assessment)
-- action: 核实并暂停出境：确认是否属于重要数据（行业主管部门目录或片区意见）；属实则暂停该场景出境并申报数据出境安全评估 (confirm with the sector catalogue or zone opinion; if confirmed, suspend and apply for the security assessment)
-- Important-data candidates (any detections row with an important_subcategory: the agent's important_data
-- rows and PI types that imply a sub-category, health_medical -> 28, genetic -> 27) on cross-border flows to a
-- scenario whose route is not security_assessment. One row per (scenario, sub-category); the subject is the
-- sub-category id of the Measures' appendix. Traffic only gives candidates: every row says so (candidate).

-- Important-data candidates on flows of scenarios not routed to the security assessment, by (scenario,
-- sub-category).
CREATE OR REPLACE TEMP VIEW hits AS
SELECT d.important_subcategory AS subject, d.*
FROM scenario_detections d
JOIN scenarios sc ON sc.scenario_id = d.scenario_id
WHERE d.important_subcategory IS NOT NULL
  AND sc.route <> 'security_assessment';

SELECT e.scenario_id,
       e.subject,
       'high' AS severity,
       concat('route: ', sc.route, '; negative_list_match.subcategory: ',
              coalesce(sc.negative_list_subcategory, 'null')) AS expected,
       concat('important-data candidate, sub-category ', e.subject, ': ', e.flows,
              ' flow(s), evidence ', array_to_string(e.field_types, ', '), ' (confidence ',
              round(e.confidence, 2), ')') AS observed,
       true AS candidate,
       sc.route,
       'security_assessment' AS required_route,
       sc.negative_list_subcategory AS filed_subcategory,
       e.field_types, e.flows, e.occurrences, e.confidence, e.first_seen, e.last_seen,
       e.example_flow_ids, e.key_paths, e.matched_terms, e.masked_samples
FROM hit_evidence e
JOIN scenarios sc ON sc.scenario_id = e.scenario_id
ORDER BY e.scenario_id, try_cast(e.subject AS INTEGER), e.subject
