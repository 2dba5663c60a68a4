// The sha256 of the key a request presents, for nginx's tenant map: the configuration holds only key hashes.
// gRPC clients send it as Triton's own metadata key (@API_KEY_HEADER@), curl users as `@API_KEY_NAME@` or
// `Authorization: Bearer KEY`.
function sha256(r) {
    var key = r.headersIn['@API_KEY_HEADER@'] || r.headersIn['@API_KEY_NAME@'] || '';
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
