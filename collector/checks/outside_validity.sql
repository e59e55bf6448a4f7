-- check: outside_validity
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（三）项：备案有效期内按备案内容出境 (Measures Art. 10(3): exports within the filing's validity)
-- action: 限期整改：有效期外暂停出境；生效前出境的说明情况，到期的及时申请延续或重新备案 (suspend exports outside the validity; explain exports before it, renew or re-file an expired one)
-- Scenario flows in the period carrying PI or important-data candidates that started before valid_from
-- (00:00 CST) or on/after the day after valid_until (00:00 CST): the store computes both instants
-- (filing.valid_from_at, filing.valid_until_end). One row per (scenario, side).

-- Scenario detections of PI or important-data candidates on flows outside the validity, by (scenario, side).
CREATE OR REPLACE TEMP VIEW hits AS
SELECT CASE WHEN d.ts_start < fi.valid_from_at THEN 'before_valid_from'
            WHEN d.ts_start >= fi.valid_until_end THEN 'after_valid_until' END AS subject,
       d.*
FROM scenario_detections d
CROSS JOIN filing fi
WHERE d.is_exported_data
  AND (d.ts_start < fi.valid_from_at OR d.ts_start >= fi.valid_until_end);

SELECT e.scenario_id,
       e.subject,
       concat(fi.valid_from, ' .. ', fi.valid_until, ' (CST)') AS expected,
       concat(e.flows, ' flow(s) carrying ', array_to_string(e.field_types, ', '), ' from ',
              strftime(e.first_seen AT TIME ZONE 'Asia/Shanghai', '%Y-%m-%d %H:%M'), ' CST to ',
              strftime(e.last_seen AT TIME ZONE 'Asia/Shanghai', '%Y-%m-%d %H:%M'), ' CST') AS observed,
       fi.valid_from, fi.valid_until, e.flows, e.occurrences, e.field_types, e.important_subcategories,
       e.first_seen, e.last_seen, e.example_flow_ids, e.key_paths, e.masked_samples
FROM hit_evidence e
CROSS JOIN filing fi
ORDER BY e.scenario_id, e.subject
