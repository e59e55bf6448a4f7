-- check: recipient_country_mismatch
-- severity: medium
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（四）项：境外接收方发生重大变化的，应重新申请备案 (Measures Art. 10(4): a marked change of the overseas recipient needs a new filing)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（二）项：备案材料载明境外接收方 (Measures Art. 10(2): overseas recipient)
-- action: 核实并重新备案：核实接收方数据实际所在国家（地区）；确已变化的，暂停向该地出境并重新申请备案 (verify where the recipient's data goes; if it moved, suspend and re-file)
-- Cross-border flows matched to a declared recipient (by domain or CIDR) whose destination country is known
-- and differs from the recipient's declared country_region. Codes are compared as they are: HK, MO and TW
-- are their own codes, so a recipient declared in SG reached in HK is a mismatch. A recipient endpoint that
-- resolves to the mainland is no export and not judged here. One row per (scenario, recipient); severity
-- high when the flows to the other country carried PI or important-data candidates.
WITH scoped AS (
    SELECT DISTINCT fr.scenario_id, fr.recipient_id, r.country_region AS declared_country,
           upper(f.dst_country) AS country, f.flow_id, f.ts_start, f.ts_end, f.bytes_out,
           f.destination
    FROM period_flows f
    JOIN flow_recipients fr ON fr.flow_id = f.flow_id
    JOIN recipients r ON r.recipient_id = fr.recipient_id
    WHERE f.dst_country IS NOT NULL
),
carrying AS (
    SELECT DISTINCT d.flow_id, d.field_type
    FROM typed_detections d
    WHERE d.is_exported_data
),
mismatched AS (
    SELECT s.*, c.field_type
    FROM scoped s
    LEFT JOIN carrying c ON c.flow_id = s.flow_id
    WHERE s.country <> s.declared_country
),
per_recipient AS (
    SELECT scenario_id, recipient_id, any_value(declared_country) AS declared_country,
           list_sort(list_distinct(list(country))) AS countries,
           count(DISTINCT flow_id) AS flows,
           count(DISTINCT flow_id) FILTER (WHERE field_type IS NOT NULL) AS flows_with_data,
           coalesce(list_sort(list_distinct(list(field_type) FILTER (WHERE field_type IS NOT NULL))), [])
               AS field_types,
           min(ts_start) AS first_seen,
           max(ts_end) AS last_seen,
           array_slice(list_sort(list_distinct(list(destination))), 1, 5) AS destinations,
           array_slice(list_sort(list_distinct(list(flow_id))), 1, 5) AS example_flow_ids
    FROM mismatched
    GROUP BY scenario_id, recipient_id
),
bytes AS (  -- bytes once per flow (a flow carrying several field types appears once per type above)
    SELECT scenario_id, recipient_id, sum(bytes_out) AS bytes_out
    FROM (SELECT DISTINCT scenario_id, recipient_id, flow_id, bytes_out FROM mismatched)
    GROUP BY ALL
),
matched AS (
    SELECT scenario_id, recipient_id, count(DISTINCT flow_id) AS flows_to_recipient
    FROM scoped
    GROUP BY ALL
)
SELECT p.scenario_id,
       p.recipient_id AS subject,
       CASE WHEN p.flows_with_data > 0 THEN 'high' ELSE 'medium' END AS severity,
       p.declared_country AS expected,
       p.countries AS observed,
       p.flows, m.flows_to_recipient, p.flows_with_data, b.bytes_out, p.field_types, p.destinations,
       p.first_seen, p.last_seen, p.example_flow_ids
FROM per_recipient p
JOIN bytes b ON b.recipient_id = p.recipient_id AND b.scenario_id IS NOT DISTINCT FROM p.scenario_id
JOIN matched m ON m.recipient_id = p.recipient_id AND m.scenario_id IS NOT DISTINCT FROM p.scenario_id
ORDER BY p.scenario_id NULLS LAST, p.recipient_id
