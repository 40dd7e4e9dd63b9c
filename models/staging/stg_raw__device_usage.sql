{#- config.meta.ingest_bucket: the rows its generic tests check in the 'touched' scope
    (macros/ingest_test_scope.sql) -#}
{{ config(meta={'ingest_bucket': {'column': 'event_at', 'kind': 'instant', 'grain': window_seconds(), 'seq_column': 'ingest_seq'}}) }}

with

source as (

    select * from {{ source('raw', 'device_usage') }}

),

renamed as (

    select
        cast(source.id as {{ dbt.type_string() }}) as device_id,
        cast(source.antenna_id as {{ dbt.type_string() }}) as antenna_id,
        cast(source.app as {{ dbt.type_string() }}) as app,
        cast(source.bytes as {{ dbt.type_bigint() }}) as bytes,
        source.event_time as event_at,
        {{ epoch_seconds('source.event_time') }} as event_epoch,
        source.kafka_topic,
        cast(source.kafka_partition as {{ dbt.type_int() }}) as kafka_partition,
        cast(source.kafka_offset as {{ dbt.type_bigint() }}) as kafka_offset,
        source.ingested_at,
        {{ staged_ingest_seq('source') }} as ingest_seq

    from source

)

select * from renamed
