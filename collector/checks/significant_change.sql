-- check: significant_change
-- severity: medium
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（四）项：出境数据量级大幅度增加的，应重新申请备案 (Measures Art. 10(4): a sharp rise in volume needs a new filing)
-- action: 提前重新备案：按预计全年出境规模重新申请备案，必要时按《促进和规范数据跨境流动规定》履行相应出境路径 (re-file at the projected annual scale before the declared scale is reached)
-- Per scenario, separately for non-sensitive and sensitive PI: the persons counted so far (as
-- scale_exceeded counts them) projected to the whole year, persons x days_in_year / elapsed_days, against
-- the declared scale x (1 + filing.volume_increase_major_pct / 100). Fires only while the count itself is
-- still within the declared scale: past it, scale_exceeded reports. A declared 0 is skipped (scale_exceeded
-- fires at the first person). elapsed_days runs from the period start to as_of (min(period end, now)),
-- floored at 30 days so that an early-January spike does not project wildly (one busy day on 2 January
-- would otherwise count 183 times), and capped at the year's length.
WITH clock AS (
    SELECT days_in_period AS days_in_year,
           least(days_in_period, greatest(30.0, elapsed_days)) AS elapsed_days
    FROM period
),
projected AS (
    SELECT m.*, k.days_in_year, k.elapsed_days, fi.volume_increase_major_pct,
           m.observed_persons * k.days_in_year / k.elapsed_days AS projected_persons,
           m.declared * (1 + fi.volume_increase_major_pct / 100.0) AS major_change_above
    FROM scenario_persons m
    CROSS JOIN clock k
    CROSS JOIN filing fi
)
SELECT scenario_id,
       subject,
       concat('declared ', declared, ' persons a year; a major change above ',
              CAST(floor(major_change_above) AS BIGINT), ' (+', volume_increase_major_pct, '%)') AS expected,
       concat('projected ', CAST(round(projected_persons) AS BIGINT), ' persons a year (', observed_persons,
              ' persons in ', CAST(round(elapsed_days) AS BIGINT), ' days)') AS observed,
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
