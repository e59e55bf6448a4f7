-- check: significant_change
-- severity: medium
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（四）项：出境数据量级大幅度增加的，应重新申请备案 (Measures Art. 10(4): a sharp rise in volume needs a new filing)
-- action: 提前重新备案：按预计全年出境规模重新申请备案，必要时按《促进和规范数据跨境流动规定》履行相应出境路径 (re-file at the projected annual scale before the declared scale is reached)
-- params: $period_from, $period_to, $as_of
-- Per scenario, separately for non-sensitive and sensitive PI: the persons counted so far (as
-- scale_exceeded counts them) projected to the whole year, persons x days_in_year / elapsed_days, against
-- the declared scale x (1 + filing.volume_increase_major_pct / 100). Fires only while the count itself is
-- still within the declared scale: past it, scale_exceeded reports. A declared 0 is skipped (scale_exceeded
-- fires at the first person). elapsed_days runs from the period start to $as_of (min(period end, now)),
-- floored at 30 days so that an early-January spike does not project wildly (one busy day on 2 January
-- would otherwise count 183 times), and capped at the year's length.
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
clock AS (
    SELECT days_in_year,
           least(days_in_year, greatest(30.0, (epoch($as_of) - epoch($period_from)) / 86400.0)) AS elapsed_days
    FROM (SELECT (epoch($period_to) - epoch($period_from)) / 86400.0 AS days_in_year)
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
),
projected AS (
    SELECT m.*, k.days_in_year, k.elapsed_days, fi.volume_increase_major_pct,
           m.observed_persons * k.days_in_year / k.elapsed_days AS projected_persons,
           m.declared * (1 + fi.volume_increase_major_pct / 100.0) AS major_change_above
    FROM measured m
    CROSS JOIN clock k
    CROSS JOIN filing fi
)
SELECT scenario_id,
       subject,
       format('declared {} persons a year; a major change above {} (+{}%)', declared,
              CAST(floor(major_change_above) AS BIGINT), volume_increase_major_pct) AS expected,
       format('projected {} persons a year ({} persons in {} days)', CAST(round(projected_persons) AS BIGINT),
              observed_persons, CAST(round(elapsed_days) AS BIGINT)) AS observed,
       declared, observed_persons,
       CAST(round(projected_persons) AS BIGINT) AS projected_persons,
       major_change_above, volume_increase_major_pct,
       round(elapsed_days, 1) AS elapsed_days, days_in_year,
       flows, first_seen, last_seen, example_flow_ids,
       'exact count over inspected flows (lower bound when sampled), projected linearly' AS counting
FROM projected
WHERE declared > 0
  AND observed_persons <= declared
  AND projected_persons > major_change_above
ORDER BY scenario_id, subject
