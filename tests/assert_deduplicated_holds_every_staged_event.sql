{#- int_device_usage__deduplicated as an additive table (PostgreSQL: macros/ingest_additive.sql)
    holds every staged event below the high it was built to, once, with the ingest_seq of the
    copy it first saw. In the windows the last build's increment touched, every event of the
    increment's staged rows and every row of the table are compared: a staged event it does
    not hold, an event held twice, or an event first seen in the increment whose ingest_seq is
    not its first staged copy's is a failure. One aggregation, no join: its cost follows the
    touched windows whatever the planner knows of the increment. In the 'all' scope, all
    history. -#}
{%- set increment = ingest_test_increment('int_device_usage__deduplicated', window_seconds()) %}

with

staged as (

    select event_at, device_id, antenna_id, app, bytes, ingest_seq
    from {{ ref('stg_raw__device_usage') }}
    where
        ingest_seq >= {{ increment.low }}
        and ingest_seq < {{ increment.high }}
        {#- the high is read when the test runs: events a build added since its compilation
            count only in the windows compared #}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

deduplicated as (

    select event_at, device_id, antenna_id, app, bytes, ingest_seq
    from {{ ref('int_device_usage__deduplicated') }}
    where {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

sides as (

    select
        event_at,
        device_id,
        antenna_id,
        app,
        bytes,
        1 as staged_copy,
        0 as held_row,
        ingest_seq as staged_seq,
        cast(null as {{ dbt.type_bigint() }}) as held_seq

    from staged

    union all

    select
        event_at,
        device_id,
        antenna_id,
        app,
        bytes,
        0 as staged_copy,
        1 as held_row,
        cast(null as {{ dbt.type_bigint() }}) as staged_seq,
        ingest_seq as held_seq

    from deduplicated

),

compared as (

    select
        event_at,
        device_id,
        antenna_id,
        app,
        bytes,
        sum(staged_copy) as staged_copies,
        sum(held_row) as held_rows,
        min(staged_seq) as first_staged_seq,
        max(held_seq) as held_seq

    from sides
    group by 1, 2, 3, 4, 5

)

select * from compared
where
    (staged_copies > 0 and held_rows = 0)
    or held_rows > 1
    or (
        held_seq >= {{ increment.low }}
        and held_seq < {{ increment.high }}
        and (staged_copies = 0 or first_staged_seq != held_seq)
    )
