-- check: route_threshold
-- severity: high
-- basis: 《促进和规范数据跨境流动规定》第五条第（一）项第4目：累计不满10万人个人信息（不含敏感个人信息）免予申报 (P16 Art. 5: the volume exemption below 100,000 non-sensitive and no sensitive PI)
-- basis: 《促进和规范数据跨境流动规定》第七条：关键信息基础设施运营者，或累计100万人以上个人信息、1万人以上敏感个人信息，应当申报数据出境安全评估 (P16 Art. 7: CIIO, 1,000,000+ or 10,000+ sensitive -> security assessment)
-- basis: 《促进和规范数据跨境流动规定》第八条：累计10万人以上不满100万人个人信息、不满1万人敏感个人信息，应当订立标准合同或通过认证 (P16 Art. 8: 100,000+ or any sensitive -> standard contract or certification)
-- action: 暂停并履行出境路径：暂停超出现有路径的出境，订立个人信息出境标准合同、通过认证或申报数据出境安全评估后重新备案 (suspend, complete the required mechanism, re-file)
-- Year-to-date distinct persons of the processor across ALL its cross-border flows (every scenario,
-- declared or not: splitting an export to stay under a threshold is not allowed), in the bands of
-- reference/rules.md. A band binds a scenario that exported that kind of PI in the period (the sensitive
-- bands the scenarios with sensitive PI, the non-sensitive bands those with non-sensitive PI, the CIIO band
-- any PI); one row per scenario whose filed route is weaker than the strongest band binding it
-- (exempt_outside_list < standard_contract = certification < security_assessment), subject = that band.
-- Important-data candidates are the important_data check's. Note: a scenario under exempt_outside_list
-- claims the FTZ exemption (P16 Art. 6); whether its data really is outside a list covering the sector
-- is negative_list_match's question, so this check applies the national thresholds (Measures Art. 18).
WITH processor AS (SELECT * FROM period_persons),
pi_flows AS (  -- scenario flows that carried PI: a linked person, or a PI detection without person keys
    SELECT s.scenario_id, s.flow_id, s.ts_start, s.ts_end
    FROM period_scenario_flows s
    WHERE EXISTS (SELECT 1 FROM record_persons rp WHERE rp.flow_id = s.flow_id)
       OR EXISTS (SELECT 1 FROM typed_detections d WHERE d.flow_id = s.flow_id AND d.is_pi)
),
per_scenario AS (
    SELECT p.scenario_id,
           count(DISTINCT p.flow_id) AS flows,
           min(p.ts_start) AS first_seen,
           max(p.ts_end) AS last_seen,
           array_slice(list_sort(list_distinct(list(p.flow_id))), 1, 5) AS example_flow_ids,
           count(DISTINCT rp.person_id) FILTER (WHERE rp.nonsensitive) AS persons_nonsensitive,
           count(DISTINCT rp.person_id) FILTER (WHERE rp.sensitive) AS persons_sensitive
    FROM pi_flows p
    LEFT JOIN record_persons rp ON rp.flow_id = p.flow_id
    GROUP BY p.scenario_id
),
bands AS (  -- (band, strength of the route it requires, rank: the bands in order, strongest first)
    SELECT s.scenario_id, 'ciio_any_pi' AS band, 2 AS strength, 1 AS rank
    FROM per_scenario s CROSS JOIN filing fi WHERE fi.is_ciio
    UNION ALL
    SELECT s.scenario_id, 'sensitive_ge_10000', 2, 2
    FROM per_scenario s CROSS JOIN processor p WHERE s.persons_sensitive > 0 AND p.persons_sensitive >= 10000
    UNION ALL
    SELECT s.scenario_id, 'nonsensitive_ge_1000000', 2, 3
    FROM per_scenario s CROSS JOIN processor p
    WHERE s.persons_nonsensitive > 0 AND p.persons_nonsensitive >= 1000000
    UNION ALL
    SELECT s.scenario_id, 'sensitive_ge_1', 1, 4
    FROM per_scenario s CROSS JOIN processor p WHERE s.persons_sensitive > 0 AND p.persons_sensitive >= 1
    UNION ALL
    SELECT s.scenario_id, 'nonsensitive_ge_100000', 1, 5
    FROM per_scenario s CROSS JOIN processor p
    WHERE s.persons_nonsensitive > 0 AND p.persons_nonsensitive >= 100000
),
required AS (
    SELECT scenario_id,
           arg_min(band, rank) AS band,
           max(strength) AS strength,
           list_transform(list_sort(list(struct_pack(rank := rank, band := band))), lambda b: b.band) AS bands
    FROM bands
    GROUP BY scenario_id
),
filed AS (
    SELECT scenario_id, route,
           CASE route WHEN 'security_assessment' THEN 2 WHEN 'standard_contract' THEN 1
                      WHEN 'certification' THEN 1 ELSE 0 END AS strength
    FROM scenarios
)
SELECT r.scenario_id,
       r.band AS subject,
       CASE WHEN r.strength = 2 THEN 'critical' ELSE 'high' END AS severity,
       f.route AS expected,
       concat(CASE WHEN r.strength = 2 THEN 'security_assessment' ELSE 'standard_contract or certification' END,
              ' required: ', p.persons_nonsensitive, ' non-sensitive / ', p.persons_sensitive,
              ' sensitive persons year to date (processor-wide)',
              CASE WHEN fi.is_ciio THEN '; the processor is a CIIO' ELSE '' END) AS observed,
       CASE WHEN r.strength = 2 THEN ['security_assessment']
            ELSE ['standard_contract', 'certification'] END AS required_routes,
       r.bands,
       fi.is_ciio,
       p.persons_nonsensitive AS processor_persons_nonsensitive,
       p.persons_sensitive AS processor_persons_sensitive,
       s.persons_nonsensitive AS scenario_persons_nonsensitive,
       s.persons_sensitive AS scenario_persons_sensitive,
       s.flows, s.first_seen, s.last_seen, s.example_flow_ids,
       'exact count over inspected flows (lower bound when sampled)' AS counting
FROM required r
JOIN filed f ON f.scenario_id = r.scenario_id
JOIN per_scenario s ON s.scenario_id = r.scenario_id
CROSS JOIN processor p
CROSS JOIN filing fi
WHERE r.strength > f.strength
ORDER BY r.scenario_id
