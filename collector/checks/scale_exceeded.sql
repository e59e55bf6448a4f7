-- check: scale_exceeded
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（二）项：备案材料载明出境数据规模 (Measures Art. 10(2): outbound scale)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 重新备案：按实际出境规模重新备案，必要时按《促进和规范数据跨境流动规定》履行相应出境路径 (re-file at the real scale)
-- params: $period_from, $period_to
-- Distinct persons per scenario in the period (calendar year, CST) above the filed scale, separately for
-- non-sensitive and sensitive PI. A filed 0 with one observed person is exceeded. Counts are exact over
-- inspected flows, so a lower bound when sampling.
WITH scoped AS (
    SELECT * FROM scenario_flows WHERE ts_start >= $period_from AND ts_start < $period_to
),
counted AS (
    SELECT s.scenario_id,
           count(DISTINCT rp.person_id) FILTER (WHERE rp.nonsensitive) AS persons_nonsensitive,
           count(DISTINCT rp.person_id) FILTER (WHERE rp.sensitive) AS persons_sensitive,
           count(DISTINCT s.flow_id) FILTER (WHERE rp.nonsensitive) AS flows_nonsensitive,
           count(DISTINCT s.flow_id) FILTER (WHERE rp.sensitive) AS flows_sensitive,
           min(s.ts_start) AS first_seen,
           max(s.ts_end) AS last_seen,
           list_sort(list_distinct(list(s.flow_id) FILTER (WHERE rp.nonsensitive)))[1:5] AS examples_nonsensitive,
           list_sort(list_distinct(list(s.flow_id) FILTER (WHERE rp.sensitive)))[1:5] AS examples_sensitive
    FROM scoped s
    JOIN record_persons rp ON rp.flow_id = s.flow_id
    GROUP BY s.scenario_id
),
measured AS (
    SELECT sc.scenario_id, 'persons_nonsensitive' AS subject, sc.persons_nonsensitive AS declared,
           c.persons_nonsensitive AS observed_persons, c.flows_nonsensitive AS flows,
           c.first_seen, c.last_seen, c.examples_nonsensitive AS example_flow_ids
    FROM scenarios sc JOIN counted c ON c.scenario_id = sc.scenario_id
    UNION ALL
    SELECT sc.scenario_id, 'persons_sensitive', sc.persons_sensitive,
           c.persons_sensitive, c.flows_sensitive,
           c.first_seen, c.last_seen, c.examples_sensitive
    FROM scenarios sc JOIN counted c ON c.scenario_id = sc.scenario_id
)
SELECT scenario_id,
       subject,
       declared AS expected,
       observed_persons AS observed,
       observed_persons - declared AS excess,
       flows, first_seen, last_seen, example_flow_ids,
       'exact count over inspected flows (lower bound when sampled)' AS counting
FROM measured
WHERE observed_persons > declared
ORDER BY scenario_id, subject
