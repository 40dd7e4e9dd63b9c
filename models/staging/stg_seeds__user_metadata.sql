with

source as (

    select * from {{ ref('user_metadata') }}

),

renamed as (

    select
        lower(id) as user_id,
        name as user_name,
        email,
        cast(quota as {{ dbt.type_bigint() }}) as quota_bytes_per_hour

    from source

)

select * from renamed
