// The sha256 of the key a request presents, for nginx's tenant map: the configuration holds only key hashes.
// gRPC clients send it as Triton's own metadata key (triton-grpc-protocol-api-key), curl users as `api-key` or
// `Authorization: Bearer KEY`.
function sha256(r) {
    var key = r.headersIn['triton-grpc-protocol-api-key'] || r.headersIn['api-key'] || '';
    var authorization = r.headersIn['Authorization'] || '';
    if (!key && authorization.startsWith('Bearer ')) {
        key = authorization.slice(7);
    }
    if (!key) {
        return '';
    }
    return require('crypto').createHash('sha256').update(key).digest('hex');
}

export default { sha256 };
