-- check: undeclared_recipient
-- severity: high
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十条第（二）项：备案材料载明境外接收方 (Measures Art. 10(2): overseas recipient)
-- basis: 《中国（浙江）自由贸易试验区数据出境负面清单管理办法（试行）》第十三条：实际出境情况与备案材料一致性抽验 (Measures Art. 13: consistency spot check)
-- action: 限期整改：暂停向未备案接收方出境，就该接收方重新申请备案 (suspend, rectify, re-file the recipient)
-- PI or important-data candidates on cross-border flows to a destination that no declared recipient's
-- endpoints cover. One row per destination (server name, else IP). Severity rises to critical when the
-- data is sensitive PI or an important-data candidate.
WITH hits AS (  -- PI exports on flows no declared recipient's endpoints cover
    SELECT e.destination AS subject, e.*
    FROM pi_exports e
    WHERE NOT EXISTS (SELECT 1 FROM flow_recipients fr WHERE fr.flow_id = e.flow_id)
),
per_subject AS (
    SELECT subject,
           list_sort(list_distinct(list(field_type))) AS field_types,
           coalesce(list_sort(list_distinct(list(important_subcategory)
                    FILTER (WHERE important_subcategory IS NOT NULL))), []) AS important_subcategories,
           sum(occurrences) AS occurrences,
           bool_or(sensitive) AS sensitive,
           array_slice(list_sort(list_distinct(flatten(list(key_paths)))), 1, 5) AS key_paths,
           array_slice(list_sort(list_distinct(flatten(list(masked_samples)))), 1, 5) AS masked_samples
    FROM hits
    GROUP BY subject
),
flows_of AS (
    SELECT f.destination AS subject,
           count(*) AS flows,
           sum(f.bytes_out) AS bytes_out,
           min(f.ts_start) AS first_seen,
           max(f.ts_end) AS last_seen,
           array_slice(list_sort(list_distinct(list(f.dst_ip))), 1, 5) AS dst_ips,
           list_sort(list_distinct(list(coalesce(f.dst_country, 'unknown')))) AS countries,
           -- the first five in time order (ties by id)
           array_slice(list_transform(list_sort(list(struct_pack(ts := f.ts_start, id := f.flow_id))),
                                      lambda x: x.id), 1, 5) AS example_flow_ids
    FROM period_flows f
    WHERE f.flow_id IN (SELECT flow_id FROM hits)
    GROUP BY 1
),
declared AS (
    SELECT coalesce(list_sort(list(value)), []) AS endpoints FROM recipient_endpoints
)
SELECT NULL::VARCHAR AS scenario_id,
       p.subject,
       CASE WHEN p.sensitive OR array_length(p.important_subcategories) > 0 THEN 'critical' ELSE 'high' END
           AS severity,
       d.endpoints AS expected,
       concat(f.flows, ' flow(s) to ', p.subject, ' (', array_to_string(f.countries, ', '), ') carrying ',
              array_to_string(p.field_types, ', ')) AS observed,
       f.flows, f.bytes_out, p.occurrences, f.first_seen, f.last_seen, f.countries, f.dst_ips,
       p.field_types, p.important_subcategories, p.sensitive, f.example_flow_ids, p.key_paths,
       p.masked_samples
FROM per_subject p
JOIN flows_of f USING (subject)
CROSS JOIN declared d
ORDER BY p.subject
