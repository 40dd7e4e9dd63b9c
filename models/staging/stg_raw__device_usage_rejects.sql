with

source as (

    select * from {{ source('raw', 'device_usage_rejects') }}

),

renamed as (

    select
        kafka_topic,
        cast(kafka_partition as {{ dbt.type_int() }}) as kafka_partition,
        cast(kafka_offset as {{ dbt.type_bigint() }}) as kafka_offset,
        reason as reject_reason,
        raw_value,
        ingested_at

    from source

)

select * from renamed
