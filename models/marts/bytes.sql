{#- The speed layer's serving table, as in the original exercise: bytes per window by
    antenna, by device (= user id) and by app, in the long `timestamp, id, value, type` shape. -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_bucket': {'column': '"timestamp"', 'kind': 'timestamp', 'grain': window_seconds()}},
        unique_key=['timestamp', 'id', 'type'],
        partition_by=ingest_partition_by('timestamp'),
        indexes=[{'columns': ['timestamp']}],
    )
}}

{%- set increment = ingest_increment(grain=window_seconds()) %}

with

usage as (

    select * from {{ ref('fct_usage_windowed') }}
    where {{ ingest_range_filter(increment, 'window_epoch') }}

),

by_antenna as (

    select
        window_start,
        antenna_id,
        {{ sum_bigint('bytes_total') }} as bytes_total

    from usage
    group by 1, 2

),

by_device as (

    select
        window_start,
        device_id,
        {{ sum_bigint('bytes_total') }} as bytes_total

    from usage
    group by 1, 2

),

by_app as (

    select
        window_start,
        app,
        {{ sum_bigint('bytes_total') }} as bytes_total

    from usage
    group by 1, 2

),

final as (

    {{ long_shape('by_antenna', 'window_start', 'antenna_id', 'bytes_total', 'antenna_bytes_total') }}

    union all

    {{ long_shape('by_device', 'window_start', 'device_id', 'bytes_total', 'id_bytes_total') }}

    union all

    {{ long_shape('by_app', 'window_start', 'app', 'bytes_total', 'app_bytes_total') }}

)

select * from final
