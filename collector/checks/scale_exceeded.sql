-- check: scale_exceeded
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（二）项：备案材料载明出境数据规模 (Measures Art. 10(2): outbound scale)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 重新备案：按实际出境规模重新备案，必要时按《促进和规范数据跨境流动规定》履行相应出境路径 (re-file at the real scale)
-- Distinct persons per scenario in the period (calendar year, CST) above the filed scale, separately for
-- non-sensitive and sensitive PI. A filed 0 with one observed person is exceeded. Counts are exact over
-- inspected flows, so a lower bound when sampling.
SELECT scenario_id,
       subject,
       declared AS expected,
       observed_persons AS observed,
       observed_persons - declared AS excess,
       flows, first_seen, last_seen, example_flow_ids,
       'exact count over inspected flows (lower bound when sampled)' AS counting
FROM scenario_persons
WHERE observed_persons > declared
ORDER BY scenario_id, subject
